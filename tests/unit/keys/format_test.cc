// Key names, labels, the canonical context, the ciphertext header and the inner payload: the
// byte formats of DESIGN §4, with known vectors and every malformed case the parsers must refuse.
#include <doctest/doctest.h>

#include "kekd/keys/ciphertext.h"
#include "kekd/keys/encryption_context.h"
#include "kekd/keys/inner_payload.h"
#include "kekd/keys/key_name.h"

using namespace kekd;
using namespace kekd::keys;

namespace {

Bytes hex_bytes(std::string_view hex) {
  Bytes out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<std::uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

Bytes valid_ciphertext() { return encode_ciphertext(Ciphertext{"payments", 7, Bytes(48, 0xab)}); }

}  // namespace

TEST_CASE("KeyNameAcceptsDesignPattern") {
  CHECK(validate_key_name("a").ok());
  CHECK(validate_key_name("payments").ok());
  CHECK(validate_key_name("0pay_ments-2").ok());
  CHECK(validate_key_name(std::string(64, 'k')).ok());
}

TEST_CASE("KeyNameFailsWhenMalformed") {
  for (const std::string& bad :
       std::vector<std::string>{"", "_x", "-x", "Pay", "pay ments", "pay/ments", "pay.x", "päy",
                                std::string(65, 'k'), std::string("a\0b", 3)}) {
    Status s = validate_key_name(bad);
    CHECK_FALSE(s.ok());
    CHECK(s.error().code() == Code::kInvalidArgument);
  }
}

TEST_CASE("KekLabelRoundTrips") {
  CHECK(kek_label("payments", 12) == "kekd:payments:12");
  auto parsed = parse_kek_label("kekd:payments:12");
  REQUIRE(parsed);
  CHECK(parsed->name == "payments");
  CHECK(parsed->version == 12);
  for (const char* bad : {"kekd:payments", "kekd::1", "kekd:Pay:1", "kekd:pay:0", "kekd:pay:01",
                          "kekd:pay:1x", "other:pay:1", "kekd:pay:99999999999"}) {
    CHECK_FALSE(parse_kek_label(bad));
  }
}

TEST_CASE("CanonicalContextSortsByKeyBytesWithLengthPrefixes") {
  EncryptionContext context{{"b", "2"}, {"a", "1"}, {"\xc3\xa9", "e"}, {"Z", ""}};
  // "Z" (0x5a) < "a" < "b" < "é" (0xc3 0xa9): byte order, not locale order.
  CHECK(to_hex(canonical_context(context)) ==
        "000000015a00000000"
        "00000001610000000131"
        "00000001620000000132"
        "00000002c3a90000000165");
}

TEST_CASE("EmptyContextDigestIsSha256OfEmptyString") {
  ContextDigest d = context_digest({});
  CHECK(to_hex(d) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_CASE("ContextDigestKnownVector") {
  // sha256(00000001 61 00000001 62), computed independently with: printf '\0\0\0\1a\0\0\0\1b' |
  // sha256sum
  ContextDigest d = context_digest({{"a", "b"}});
  Bytes canonical = canonical_context({{"a", "b"}});
  CHECK(canonical == hex_bytes("00000001610000000162"));
  CHECK(to_hex(d) == "16275ef0f5d0eb9dd9e0a53277549fda5c886358a6872df23c797b13e11455bc");
}

TEST_CASE("CiphertextRoundTrips") {
  Bytes bytes = valid_ciphertext();
  CHECK(bytes[0] == 0x01);
  CHECK(bytes[1] == 8);
  CHECK(std::string(bytes.begin() + 2, bytes.begin() + 10) == "payments");
  CHECK(to_hex(ByteView(bytes).subspan(10, 4)) == "00000007");
  auto parsed = parse_ciphertext(bytes);
  REQUIRE(parsed.ok());
  CHECK(parsed->key_name == "payments");
  CHECK(parsed->version == 7);
  CHECK(parsed->wrapped == Bytes(48, 0xab));
}

TEST_CASE("ParseCiphertextFailsForEveryTruncation") {
  Bytes bytes = valid_ciphertext();
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    auto parsed = parse_ciphertext(ByteView(bytes.data(), n));
    CHECK_MESSAGE(!parsed.ok(), "length ", n);
    if (!parsed.ok()) CHECK(parsed.error().code() == Code::kInvalidCiphertext);
  }
}

TEST_CASE("ParseCiphertextFailsWhenHeaderIsMalformed") {
  auto expect_invalid = [](Bytes bytes) {
    auto parsed = parse_ciphertext(bytes);
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.error().code() == Code::kInvalidCiphertext);
    CHECK(parsed.error().message() == invalid_ciphertext().message());
  };
  Bytes good = valid_ciphertext();

  Bytes unknown_format = good;
  unknown_format[0] = 0x02;
  expect_invalid(unknown_format);

  Bytes zero_name = good;
  zero_name[1] = 0;
  expect_invalid(zero_name);

  Bytes name_too_long = good;
  name_too_long[1] = 65;
  expect_invalid(name_too_long);

  // The name length points past the end of the input.
  expect_invalid(Bytes{0x01, 60, 'a', 'b'});
  Bytes name_past_end(good.begin(), good.begin() + 12);
  name_past_end[1] = 20;
  expect_invalid(name_past_end);

  Bytes bad_name_char = good;
  bad_name_char[2] = 'P';
  expect_invalid(bad_name_char);

  Bytes version_zero = encode_ciphertext(Ciphertext{"payments", 0, Bytes(48, 1)});
  expect_invalid(version_zero);

  expect_invalid(encode_ciphertext(Ciphertext{"payments", 1, Bytes(40, 1)}));    // < 48
  expect_invalid(encode_ciphertext(Ciphertext{"payments", 1, Bytes(52, 1)}));    // not 8k
  expect_invalid(encode_ciphertext(Ciphertext{"payments", 1, Bytes(4152, 1)}));  // > 4144
  CHECK(parse_ciphertext(encode_ciphertext(Ciphertext{"payments", 1, Bytes(4144, 1)})).ok());
}

TEST_CASE("InnerPayloadFramesAndPadsToMultipleOf8") {
  ContextDigest digest = context_digest({});
  for (std::size_t n : {1, 5, 6, 7, 8, 20, 4096}) {
    Bytes plaintext(n, 0x5c);
    auto payload = build_payload(digest, plaintext);
    REQUIRE(payload.ok());
    CHECK(payload->size() % 8 == 0);
    CHECK(payload->size() == (34 + n + 7) / 8 * 8);
    CHECK((*payload)[32] == (n >> 8));
    CHECK((*payload)[33] == (n & 0xff));
    auto opened = open_payload(*payload, digest);
    REQUIRE(opened.ok());
    CHECK(Bytes(opened->begin(), opened->end()) == plaintext);
  }
}

TEST_CASE("BuildPayloadFailsWhenPlaintextSizeOutOfRange") {
  ContextDigest digest = context_digest({});
  CHECK(build_payload(digest, Bytes()).error().code() == Code::kInvalidArgument);
  CHECK(build_payload(digest, Bytes(4097, 1)).error().code() == Code::kInvalidArgument);
}

TEST_CASE("OpenPayloadFailsWhenContextOrFrameIsWrong") {
  ContextDigest digest = context_digest({{"tenant", "acme"}});
  SecretBytes payload = *build_payload(digest, Bytes(20, 7));

  CHECK(open_payload(payload, context_digest({})).error().code() == Code::kInvalidCiphertext);
  CHECK(open_payload(payload, context_digest({{"tenant", "acmf"}})).error().code() ==
        Code::kInvalidCiphertext);

  SecretBytes bad_length = payload;
  bad_length[33] = 30;  // claims 30 bytes: needs 64 bytes of payload, has 56
  CHECK(open_payload(bad_length, digest).error().code() == Code::kInvalidCiphertext);

  SecretBytes zero_length = payload;
  zero_length[33] = 0;
  CHECK(open_payload(zero_length, digest).error().code() == Code::kInvalidCiphertext);

  SecretBytes dirty_padding = payload;
  dirty_padding.back() = 1;
  CHECK(open_payload(dirty_padding, digest).error().code() == Code::kInvalidCiphertext);

  CHECK(open_payload(ByteView(payload.data(), 32), digest).error().code() ==
        Code::kInvalidCiphertext);
}
