// The KEK's protections, read back from SoftHSM, attacked directly through PKCS#11, and checked
// once more by an independent tool (python3-pykcs11). Every refusal has a positive control next to
// it, so that a test cannot pass merely because every call fails.
#include <doctest/doctest.h>

#include "support/raw_session.h"
#include "support/token_fixture.h"

using namespace kekd;
using namespace kekd::testing;

namespace {

struct Fixture {
  TokenFixture token;
  std::unique_ptr<hsm::Pkcs11Hsm> hsm = token.open_hsm(2);
  RawSession raw{*hsm};
  CK_OBJECT_HANDLE kek;
  Fixture() {
    REQUIRE(hsm->generate_kek("kekd:payments:1").ok());
    kek = raw.find("kekd:payments:1");
  }
  Bytes payload = Bytes(40, 0x42);
};

}  // namespace

TEST_CASE_FIXTURE(Fixture, "KekValueCannotBeRead") {
  Bytes value;
  CHECK(raw.get(kek, CKA_VALUE, value) == CKR_ATTRIBUTE_SENSITIVE);
}

TEST_CASE_FIXTURE(Fixture, "KekAttributesMatchDesignTemplate") {
  CHECK(raw.get_ulong(kek, CKA_CLASS) == CKO_SECRET_KEY);
  CHECK(raw.get_ulong(kek, CKA_KEY_TYPE) == CKK_AES);
  CHECK(raw.get_ulong(kek, CKA_VALUE_LEN) == 32);
  for (CK_ATTRIBUTE_TYPE yes : {CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, CKA_ALWAYS_SENSITIVE,
                                CKA_NEVER_EXTRACTABLE, CKA_WRAP, CKA_UNWRAP}) {
    CAPTURE(yes);
    CHECK(raw.get_bool(kek, yes));
  }
  for (CK_ATTRIBUTE_TYPE no : {CKA_EXTRACTABLE, CKA_MODIFIABLE, CKA_ENCRYPT, CKA_DECRYPT, CKA_SIGN,
                               CKA_VERIFY, CKA_DERIVE}) {
    CAPTURE(no);
    CHECK_FALSE(raw.get_bool(kek, no));
  }
  Bytes mechanisms;
  REQUIRE(raw.get(kek, CKA_ALLOWED_MECHANISMS, mechanisms) == CKR_OK);
  REQUIRE(mechanisms.size() == sizeof(CK_MECHANISM_TYPE));
  CK_MECHANISM_TYPE only;
  std::memcpy(&only, mechanisms.data(), sizeof only);
  CHECK(only == CKM_AES_KEY_WRAP_PAD);
  Bytes id;
  REQUIRE(raw.get(kek, CKA_ID, id) == CKR_OK);
  CHECK(id.size() == 16);
}

TEST_CASE_FIXTURE(Fixture, "KekCannotBeWrappedByAnotherKey") {
  CK_OBJECT_HANDLE other = raw.generate_session_aes_key();
  CK_MECHANISM mechanism{CKM_AES_KEY_WRAP_PAD, nullptr, 0};
  Bytes out(128);
  CK_ULONG length = out.size();
  CHECK(raw.fn()->C_WrapKey(raw.handle(), &mechanism, other, kek, out.data(), &length) ==
        CKR_KEY_UNEXTRACTABLE);
  // Control: the same call wraps an extractable key.
  CK_OBJECT_HANDLE extractable = raw.generate_session_aes_key();
  length = out.size();
  CHECK(raw.fn()->C_WrapKey(raw.handle(), &mechanism, other, extractable, out.data(), &length) ==
        CKR_OK);
}

TEST_CASE_FIXTURE(Fixture, "KekCannotBeMadeExtractableOrModifiable") {
  CHECK(raw.set_bool(kek, CKA_EXTRACTABLE, true) != CKR_OK);
  CHECK(raw.set_bool(kek, CKA_MODIFIABLE, true) != CKR_OK);
  CHECK(raw.set_bool(kek, CKA_SENSITIVE, false) != CKR_OK);
  CHECK(raw.set_bool(kek, CKA_ENCRYPT, true) != CKR_OK);
  CHECK_FALSE(raw.get_bool(kek, CKA_EXTRACTABLE));
  CHECK_FALSE(raw.get_bool(kek, CKA_MODIFIABLE));
  CHECK(raw.get_bool(kek, CKA_SENSITIVE));

  // A copy may not loosen the policy either.
  CK_BBOOL yes = CK_TRUE;
  CK_ATTRIBUTE loosen[] = {{CKA_EXTRACTABLE, &yes, sizeof yes}};
  CK_OBJECT_HANDLE copy = CK_INVALID_HANDLE;
  CHECK(raw.fn()->C_CopyObject(raw.handle(), kek, loosen, 1, &copy) != CKR_OK);

  // Control: a modifiable key's attributes can be changed through the same call.
  CK_OBJECT_HANDLE other = raw.generate_session_aes_key();
  CHECK(raw.set_bool(other, CKA_ENCRYPT, true) == CKR_OK);
}

TEST_CASE_FIXTURE(Fixture, "KekWorksOnlyWithAesKeyWrapPad") {
  CK_OBJECT_HANDLE object = raw.create_payload_object(payload);
  Bytes out(128);
  CK_ULONG length = out.size();

  CK_MECHANISM plain_wrap{CKM_AES_KEY_WRAP, nullptr, 0};
  CHECK(raw.fn()->C_WrapKey(raw.handle(), &plain_wrap, kek, object, out.data(), &length) != CKR_OK);
  CK_MECHANISM ecb{CKM_AES_ECB, nullptr, 0};
  CHECK(raw.fn()->C_EncryptInit(raw.handle(), &ecb, kek) != CKR_OK);
  CHECK(raw.fn()->C_DecryptInit(raw.handle(), &ecb, kek) != CKR_OK);
  std::uint8_t iv[16] = {};
  CK_MECHANISM cbc{CKM_AES_CBC_PAD, iv, sizeof iv};
  CHECK(raw.fn()->C_EncryptInit(raw.handle(), &cbc, kek) != CKR_OK);
  CK_MECHANISM cmac{CKM_AES_CMAC, nullptr, 0};
  CHECK(raw.fn()->C_SignInit(raw.handle(), &cmac, kek) != CKR_OK);
  CK_MECHANISM pad{CKM_AES_KEY_WRAP_PAD, nullptr, 0};
  CHECK(raw.fn()->C_EncryptInit(raw.handle(), &pad, kek) != CKR_OK);

  // Control: the one allowed mechanism wraps.
  length = out.size();
  CHECK(raw.fn()->C_WrapKey(raw.handle(), &pad, kek, object, out.data(), &length) == CKR_OK);
  CHECK(length == payload.size() + 8);
}

TEST_CASE_FIXTURE(Fixture, "KekAttributesPassIndependentPykcs11Check") {
  int status = -1;
  std::string out = run_command(
      "/usr/bin/python3 " +
          shell_quote(std::string(KEKD_SOURCE_DIR) + "/tests/integration/pkcs11_helper.py") +
          " --module " + KEKD_SOFTHSM_MODULE + " --token-label kekd --pin-file " +
          shell_quote(token.pin_file()) + " check-kek --label kekd:payments:1 2>&1",
      &status);
  INFO(out);
  CHECK(status == 0);
  CHECK(out.find("CKA_ALLOWED_MECHANISMS") != std::string::npos);
}
