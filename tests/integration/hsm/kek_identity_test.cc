// kekd finds a KEK by its label, so someone with the token's PIN could put a key of their own
// under a KEK's label: one whose value they know, which kekd would then wrap applications' DEKs
// with. Before kekd uses an object as a KEK it checks, once, that the token generated it and it was
// never extractable (CKA_LOCAL, CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE, which only the
// token sets), and refuses it otherwise (docs/security.md, G2). Each case ends with a generated KEK
// working on the same token and sessions, so that a refusal cannot come from a broken HSM path.
#include <doctest/doctest.h>

#include <botan/block_cipher.h>
#include <botan/nist_keywrap.h>

#include <string>

#include "hsm/kek_template.h"
#include "support/raw_session.h"
#include "support/token_fixture.h"

using namespace kekd;
using namespace kekd::testing;

namespace {

struct Fixture {
  TokenFixture token;
  std::unique_ptr<hsm::Pkcs11Hsm> hsm = token.open_hsm(2);
  RawSession raw{*hsm};
  Bytes payload = Bytes(40, 0x42);

  // The positive control: a KEK the token generated wraps and unwraps.
  void expect_generated_kek_works() {
    REQUIRE(hsm->generate_kek("kekd:control:1").ok());
    auto wrapped = hsm->wrap("kekd:control:1", payload);
    REQUIRE(wrapped.ok());
    auto opened = hsm->unwrap("kekd:control:1", *wrapped);
    REQUIRE(opened.ok());
    CHECK(Bytes(opened->begin(), opened->end()) == payload);
  }

  // A token AES key under label, sensitive and non-extractable from the start, as a KEK is.
  static hsm::AttributeTemplate locked_down_key(const std::string& label, CK_ULONG bytes) {
    hsm::AttributeTemplate t;
    t.set_ulong(CKA_CLASS, CKO_SECRET_KEY)
        .set_ulong(CKA_KEY_TYPE, CKK_AES)
        .set_ulong(CKA_VALUE_LEN, bytes)
        .set_bool(CKA_TOKEN, true)
        .set_bool(CKA_PRIVATE, true)
        .set_bool(CKA_SENSITIVE, true)
        .set_bool(CKA_EXTRACTABLE, false)
        .set_bool(CKA_WRAP, true)
        .set_bool(CKA_UNWRAP, true)
        .set_bytes(CKA_LABEL,
                   ByteView(reinterpret_cast<const std::uint8_t*>(label.data()), label.size()));
    return t;
  }

  void check_refused(const Status& status, const std::string& reason) {
    REQUIRE_FALSE(status.ok());
    CHECK(status.error().code() == Code::kInternal);
    CHECK_MESSAGE(
        status.error().message().find("is not a KEK that kekd generated") != std::string::npos,
        status.error().message());
    CHECK_MESSAGE(status.error().message().find(reason) != std::string::npos,
                  status.error().message());
  }
};

Status status_of(const Result<Bytes>& r) { return r.ok() ? ok_status() : Status(r.error()); }
Status status_of(const Result<SecretBytes>& r) { return r.ok() ? ok_status() : Status(r.error()); }

}  // namespace

TEST_CASE_FIXTURE(Fixture, "KekdRefusesAnExtractableKeyOfKnownValueUnderAKekLabel") {
  raw.import_known_aes_key("kekd:payments:1", Bytes(32, 0x11));
  check_refused(status_of(hsm->wrap("kekd:payments:1", payload)), "CKA_EXTRACTABLE is true");
  check_refused(status_of(hsm->unwrap("kekd:payments:1", Bytes(48, 0x01))),
                "CKA_NEVER_EXTRACTABLE is false");
  // Refused every time, not only while the handle is uncached.
  check_refused(status_of(hsm->wrap("kekd:payments:1", payload)), "CKA_SENSITIVE is false");

  expect_generated_kek_works();
}

TEST_CASE_FIXTURE(Fixture, "KekdRefusesAnImportedKeyEvenIfSensitiveAndNonExtractable") {
  // Locked down after the fact is not enough: its value was known when it was imported.
  raw.import_known_aes_key("kekd:payments:1", Bytes(32, 0x11), /*locked_down=*/true);
  check_refused(status_of(hsm->wrap("kekd:payments:1", payload)), "CKA_ALWAYS_SENSITIVE is false");
  check_refused(status_of(hsm->wrap("kekd:payments:1", payload)), "CKA_NEVER_EXTRACTABLE is false");
  check_refused(status_of(hsm->wrap("kekd:payments:1", payload)), "CKA_LOCAL is false");
  expect_generated_kek_works();
}

TEST_CASE_FIXTURE(Fixture, "KekdRefusesAKeyDerivedSoThatItsValueIsKnown") {
  // A derived key inherits CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE from its base key, and
  // with AES-ECB-encrypt-data its value is the base key's encryption of chosen data, which the
  // attacker can compute with C_Encrypt. Only CKA_LOCAL tells it from a generated KEK.
  hsm::AttributeTemplate base_template;
  base_template.set_ulong(CKA_CLASS, CKO_SECRET_KEY)
      .set_ulong(CKA_KEY_TYPE, CKK_AES)
      .set_ulong(CKA_VALUE_LEN, 32)
      .set_bool(CKA_TOKEN, false)
      .set_bool(CKA_SENSITIVE, true)
      .set_bool(CKA_EXTRACTABLE, false)
      .set_bool(CKA_ENCRYPT, true)
      .set_bool(CKA_DERIVE, true);
  CK_MECHANISM keygen{CKM_AES_KEY_GEN, nullptr, 0};
  CK_OBJECT_HANDLE base = CK_INVALID_HANDLE;
  REQUIRE(raw.fn()->C_GenerateKey(raw.handle(), &keygen, base_template.data(), base_template.size(),
                                  &base) == CKR_OK);

  Bytes chosen(32, 0x5a);
  CK_KEY_DERIVATION_STRING_DATA data{chosen.data(), chosen.size()};
  CK_MECHANISM derive{CKM_AES_ECB_ENCRYPT_DATA, &data, sizeof data};
  const std::string label = "kekd:payments:1";
  hsm::AttributeTemplate t = locked_down_key(label, 32);
  CK_OBJECT_HANDLE derived = CK_INVALID_HANDLE;
  REQUIRE(raw.fn()->C_DeriveKey(raw.handle(), &derive, base, t.data(), t.size(), &derived) ==
          CKR_OK);
  CHECK(raw.get_bool(derived, CKA_ALWAYS_SENSITIVE));
  CHECK(raw.get_bool(derived, CKA_NEVER_EXTRACTABLE));
  CHECK_FALSE(raw.get_bool(derived, CKA_LOCAL));

  // The attack is real: the derived key's value is known, so its wraps can be opened outside.
  CK_MECHANISM ecb{CKM_AES_ECB, nullptr, 0};
  REQUIRE(raw.fn()->C_EncryptInit(raw.handle(), &ecb, base) == CKR_OK);
  Bytes known(32);
  CK_ULONG known_len = known.size();
  REQUIRE(raw.fn()->C_Encrypt(raw.handle(), chosen.data(), chosen.size(), known.data(),
                              &known_len) == CKR_OK);
  REQUIRE(known_len == 32);
  CK_OBJECT_HANDLE object = raw.create_payload_object(payload);
  CK_MECHANISM kwp{CKM_AES_KEY_WRAP_PAD, nullptr, 0};
  Bytes wrapped(payload.size() + 16);
  CK_ULONG wrapped_len = wrapped.size();
  REQUIRE(raw.fn()->C_WrapKey(raw.handle(), &kwp, derived, object, wrapped.data(), &wrapped_len) ==
          CKR_OK);
  wrapped.resize(wrapped_len);
  auto aes = Botan::BlockCipher::create_or_throw("AES-256");
  aes->set_key(known);
  auto opened = Botan::nist_key_unwrap_padded(wrapped.data(), wrapped.size(), *aes);
  CHECK(Bytes(opened.begin(), opened.end()) == payload);

  check_refused(status_of(hsm->wrap(label, payload)), "CKA_LOCAL is false");
  expect_generated_kek_works();
}

TEST_CASE_FIXTURE(Fixture, "KekdRefusesAGeneratedKeyOfTheWrongKind") {
  // Generated in the token and never extractable, but a 128-bit key: not what kekd generates.
  const std::string label = "kekd:payments:1";
  hsm::AttributeTemplate t = locked_down_key(label, 16);
  CK_MECHANISM mechanism{CKM_AES_KEY_GEN, nullptr, 0};
  CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
  REQUIRE(raw.fn()->C_GenerateKey(raw.handle(), &mechanism, t.data(), t.size(), &key) == CKR_OK);
  CHECK(raw.get_bool(key, CKA_ALWAYS_SENSITIVE));
  CHECK(raw.get_bool(key, CKA_NEVER_EXTRACTABLE));
  CHECK(raw.get_bool(key, CKA_LOCAL));
  check_refused(status_of(hsm->wrap(label, payload)), "not 32 bytes long");
  expect_generated_kek_works();
}
