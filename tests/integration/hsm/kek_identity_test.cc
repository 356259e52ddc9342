// kekd finds a KEK by its label, so someone with the token's PIN could put a key of their own
// under a KEK's label: one whose value they know, which kekd would then wrap applications' DEKs
// with. Before kekd uses an object as a KEK it checks, once, that the token generated it and it was
// never extractable (CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE, which only the token sets),
// and refuses it otherwise (docs/security.md, G2). Each refusal has a positive control beside it.
#include <doctest/doctest.h>

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

  // Positive control: a KEK the token generated, on the same token and sessions, works.
  REQUIRE(hsm->generate_kek("kekd:payments:2").ok());
  auto wrapped = hsm->wrap("kekd:payments:2", payload);
  REQUIRE(wrapped.ok());
  auto opened = hsm->unwrap("kekd:payments:2", *wrapped);
  REQUIRE(opened.ok());
  CHECK(Bytes(opened->begin(), opened->end()) == payload);
}

TEST_CASE_FIXTURE(Fixture, "KekdRefusesAnImportedKeyEvenIfSensitiveAndNonExtractable") {
  // Locked down after the fact is not enough: its value was known when it was imported.
  raw.import_known_aes_key("kekd:payments:1", Bytes(32, 0x11), /*locked_down=*/true);
  check_refused(status_of(hsm->wrap("kekd:payments:1", payload)), "CKA_ALWAYS_SENSITIVE is false");
  check_refused(status_of(hsm->wrap("kekd:payments:1", payload)), "CKA_NEVER_EXTRACTABLE is false");
}

TEST_CASE_FIXTURE(Fixture, "KekdRefusesAGeneratedKeyOfTheWrongKind") {
  // Generated in the token and never extractable, but a 128-bit key: not what kekd generates.
  hsm::AttributeTemplate t;
  const std::string label = "kekd:payments:1";
  t.set_ulong(CKA_CLASS, CKO_SECRET_KEY)
      .set_ulong(CKA_KEY_TYPE, CKK_AES)
      .set_ulong(CKA_VALUE_LEN, 16)
      .set_bool(CKA_TOKEN, true)
      .set_bool(CKA_PRIVATE, true)
      .set_bool(CKA_SENSITIVE, true)
      .set_bool(CKA_EXTRACTABLE, false)
      .set_bool(CKA_WRAP, true)
      .set_bool(CKA_UNWRAP, true)
      .set_bytes(CKA_LABEL,
                 ByteView(reinterpret_cast<const std::uint8_t*>(label.data()), label.size()));
  CK_MECHANISM mechanism{CKM_AES_KEY_GEN, nullptr, 0};
  CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
  REQUIRE(raw.fn()->C_GenerateKey(raw.handle(), &mechanism, t.data(), t.size(), &key) == CKR_OK);
  CHECK(raw.get_bool(key, CKA_ALWAYS_SENSITIVE));
  CHECK(raw.get_bool(key, CKA_NEVER_EXTRACTABLE));
  check_refused(status_of(hsm->wrap(label, payload)), "not 32 bytes long");
}
