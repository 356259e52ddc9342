// Operators: parsing public keys (which algorithms, which encodings), names, fingerprints.
#include <doctest/doctest.h>

#include <botan/base64.h>
#include <botan/hash.h>

#include "kekd/quorum/operator.h"
#include "unit/quorum/operator_keys.h"

using namespace kekd;
using namespace kekd::quorum;
using namespace kekd::testing;

namespace {

void expect_invalid(const Result<Operator>& r) {
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code() == Code::kInvalidArgument);
}

// Public keys of kinds kekd refuses, as `openssl ... -pubout` writes them.
constexpr const char* kP384Pem =
    "-----BEGIN PUBLIC KEY-----\n"
    "MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEjagK/705XlqKOm/ND0PaXgF8WgI1cy5m\n"
    "DqxbFQNJVoP8+fZjKWhATpXrNSl8KEtwQT2kRO0Ol7RKt3WurJYCfCBm7TQSmRmA\n"
    "br5JJeP01nOQ6cLf++JKqO6AmSq9SaKz\n"
    "-----END PUBLIC KEY-----\n";
constexpr const char* kRsaPem =
    "-----BEGIN PUBLIC KEY-----\n"
    "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDjDvheJmBJlA64mG+9K5G7qHCX\n"
    "KKmgS4HVyWC5yOj5d2BwIKjMvqhpf7qRJUICLzESc1/kySzxo34ZF+vQ9rKo6t7V\n"
    "1xoemlCDYjIP1j91RV6xkbGG4/DPkZROBJC1ja/cQst6g3rdWkMy96R0pXXeRSfO\n"
    "18Rz5KHPAgnpRBMlmQIDAQAB\n"
    "-----END PUBLIC KEY-----\n";
constexpr const char* kEd448Pem =
    "-----BEGIN PUBLIC KEY-----\n"
    "MEMwBQYDK2VxAzoA/Y5As+4WzXl+S1OIbZ1+xT9VMx7pbnkPndGCA7Z8b8g15bSO\n"
    "ugXJyvBNUi6DVxYqmuHfwCuQx5OA\n"
    "-----END PUBLIC KEY-----\n";
constexpr const char* kX25519Pem =
    "-----BEGIN PUBLIC KEY-----\n"
    "MCowBQYDK2VuAyEASUcwpobQXgMvbH/z8H64TgtI9GaNz/vVYkcP0ivIdEc=\n"
    "-----END PUBLIC KEY-----\n";
// kP256PemA with a compressed point, and with explicit curve parameters.
constexpr const char* kP256CompressedPem =
    "-----BEGIN PUBLIC KEY-----\n"
    "MDkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDIgAD8FyGtqQj9fdLur8fTvkiBnFtJaFp\n"
    "axt+NL7P6DzjRUg=\n"
    "-----END PUBLIC KEY-----\n";
constexpr const char* kP256ExplicitPem =
    "-----BEGIN PUBLIC KEY-----\n"
    "MIIBSzCCAQMGByqGSM49AgEwgfcCAQEwLAYHKoZIzj0BAQIhAP////8AAAABAAAA\n"
    "AAAAAAAAAAAA////////////////MFsEIP////8AAAABAAAAAAAAAAAAAAAA////\n"
    "///////////8BCBaxjXYqjqT57PrvVV2mIa8ZR0GsMxTsPY7zjw+J9JgSwMVAMSd\n"
    "NgiG5wSTamZ44ROdJreBn36QBEEEaxfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5\n"
    "RdiYwpZP40Li/hp/m47n60p8D54WK84zV2sxXs7LtkBoN79R9QIhAP////8AAAAA\n"
    "//////////+85vqtpxeehPO5ysL8YyVRAgEBA0IABPBchrakI/X3S7q/H075IgZx\n"
    "bSWhaWsbfjS+z+g840VILrFwdQUcTFbIa2qKCORH1smE/VqPYbLROZ9nA5u51y0=\n"
    "-----END PUBLIC KEY-----\n";

}  // namespace

TEST_CASE("ParseOperatorAcceptsEd25519AndEcdsaP256") {
  OperatorKey ed = OperatorKey::ed25519("alice");
  auto a = parse_operator("alice", ed.public_pem());
  REQUIRE_MESSAGE(a.ok(), a.error().to_string());
  CHECK(a->algorithm == Algorithm::kEd25519);
  CHECK(a->name == "alice");
  CHECK(a->spki_der.size() == 44);

  auto b = parse_operator("bob", kP256PemA);
  REQUIRE_MESSAGE(b.ok(), b.error().to_string());
  CHECK(b->algorithm == Algorithm::kEcdsaP256);
  CHECK(Botan::base64_encode(b->spki_der) == kP256SpkiA);
}

TEST_CASE("ParseOperatorToleratesSurroundingWhitespaceOnly") {
  auto padded = parse_operator("bob", "\n  " + std::string(kP256PemA) + "\n\n");
  REQUIRE(padded.ok());
  expect_invalid(parse_operator("bob", "comment\n" + std::string(kP256PemA)));
  expect_invalid(parse_operator("bob", std::string(kP256PemA) + "trailing"));
}

TEST_CASE("PemRoundTripsAsOpensslWritesIt") {
  auto b = parse_operator("bob", kP256PemA);
  REQUIRE(b.ok());
  CHECK(b->pem() == kP256PemA);
}

TEST_CASE("FingerprintIsSha256OfDerAsSha256sumPrintsIt") {
  auto b = parse_operator("bob", kP256PemA);
  REQUIRE(b.ok());
  // `openssl pkey -pubin -in bob.pem -outform DER | sha256sum`
  CHECK(b->fingerprint() ==
        "sha256:ee5d7b6683b1fb18f452bbaf8a292fba025b77d3fea7ee65e3dbcd71af54bf97");
}

TEST_CASE("ParseOperatorFailsForOtherAlgorithmsAndCurves") {
  for (const char* pem : {kP384Pem, kRsaPem, kEd448Pem, kX25519Pem}) {
    auto r = parse_operator("alice", pem);
    expect_invalid(r);
    CHECK(r.error().message().find("Ed25519 or ECDSA P-256") != std::string::npos);
  }
}

TEST_CASE("ParseOperatorFailsForNonCanonicalEncodings") {
  for (const char* pem : {kP256CompressedPem, kP256ExplicitPem}) {
    auto r = parse_operator("bob", pem);
    expect_invalid(r);
    CHECK(r.error().message().find("canonical") != std::string::npos);
  }
}

TEST_CASE("ParseOperatorFailsForMalformedPem") {
  std::string good(kP256PemA);
  expect_invalid(parse_operator("bob", ""));
  expect_invalid(parse_operator("bob", "not a key"));
  expect_invalid(parse_operator("bob", good + good));  // two keys
  std::string certificate = good;
  certificate.replace(certificate.find("PUBLIC KEY"), 10, "CERTIFICATE");
  expect_invalid(parse_operator("bob", certificate));
  std::string private_label = good;
  private_label.replace(private_label.find("PUBLIC KEY"), 10, "PRIVATE KEY");
  expect_invalid(parse_operator("bob", private_label));
  std::string bad_base64 = good;
  bad_base64[40] = '*';
  expect_invalid(parse_operator("bob", bad_base64));
  std::string truncated = good;
  truncated.erase(60, 20);
  expect_invalid(parse_operator("bob", truncated));
  expect_invalid(parse_operator("bob", std::string(5000, 'A')));
}

TEST_CASE("ParseOperatorFailsForInvalidNames") {
  for (std::string name :
       std::vector<std::string>{"", "Alice", "_alice", ".alice", "-alice", "al ice", "al:ice",
                                "alice\n", std::string(65, 'a')}) {
    expect_invalid(parse_operator(name, kP256PemA));
  }
  for (std::string name : std::vector<std::string>{"a", "0", "alice.smith", "bob_2", "carol-x",
                                                   std::string(64, 'a')}) {
    CHECK_MESSAGE(parse_operator(name, kP256PemA).ok(), name);
  }
}

TEST_CASE("OperatorFromDerFailsForGarbage") {
  expect_invalid(operator_from_der("alice", Bytes{}));
  expect_invalid(operator_from_der("alice", Bytes{0x30, 0x03, 0x02, 0x01, 0x01}));
  expect_invalid(operator_from_der("alice", Bytes(2000, 0x30)));
}
