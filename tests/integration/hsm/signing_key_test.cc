// kekd's own signing key (audit checkpoints, ceremony transcripts): generated in SoftHSM, private
// half non-extractable, signatures checked by the openssl CLI as an independent verifier.
#include <doctest/doctest.h>

#include <botan/pem.h>

#include <fstream>

#include "hsm/kek_template.h"
#include "support/raw_session.h"
#include "support/temp_dir.h"
#include "support/token_fixture.h"

using namespace kekd;
using namespace kekd::testing;

namespace {

void write_file(const std::string& path, ByteView bytes) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

TEST_CASE("SigningKeySignaturesVerifyWithOpenssl") {
  TokenFixture token;
  auto hsm = token.open_hsm(2);
  REQUIRE(hsm->generate_signing_key("kekd-internal:audit").ok());
  auto spki = hsm->signing_public_key("kekd-internal:audit");
  REQUIRE(spki.ok());

  TempDir dir;
  std::string pem = Botan::PEM_Code::encode(*spki, "PUBLIC KEY");
  write_file(dir.file("pub.pem"),
             ByteView(reinterpret_cast<const std::uint8_t*>(pem.data()), pem.size()));
  std::string message = "kekd transcript v1\nceremony: 00\n";
  write_file(dir.file("msg"),
             ByteView(reinterpret_cast<const std::uint8_t*>(message.data()), message.size()));
  auto signature =
      hsm->sign("kekd-internal:audit",
                ByteView(reinterpret_cast<const std::uint8_t*>(message.data()), message.size()));
  REQUIRE(signature.ok());
  write_file(dir.file("sig"), *signature);

  std::string verify = "openssl dgst -sha256 -verify " + dir.file("pub.pem") + " -signature " +
                       dir.file("sig") + " ";
  int status = -1;
  std::string out = run_command(verify + dir.file("msg") + " 2>&1", &status);
  CHECK_MESSAGE(status == 0, out);
  CHECK(out.find("Verified OK") != std::string::npos);

  write_file(dir.file("other"), Bytes{'x'});
  run_command(verify + dir.file("other") + " 2>&1", &status);
  CHECK(status != 0);
}

TEST_CASE("SigningPrivateKeyIsNonExtractableAndSignOnly") {
  TokenFixture token;
  auto hsm = token.open_hsm(2);
  REQUIRE(hsm->generate_signing_key("kekd-internal:audit").ok());
  CHECK(hsm->generate_signing_key("kekd-internal:audit").error().code() == Code::kAlreadyExists);

  RawSession raw(*hsm);
  hsm::AttributeTemplate query;
  query.set_ulong(CKA_CLASS, CKO_PRIVATE_KEY);
  REQUIRE(raw.fn()->C_FindObjectsInit(raw.handle(), query.data(), query.size()) == CKR_OK);
  CK_OBJECT_HANDLE key;
  CK_ULONG count = 0;
  REQUIRE(raw.fn()->C_FindObjects(raw.handle(), &key, 1, &count) == CKR_OK);
  REQUIRE(raw.fn()->C_FindObjectsFinal(raw.handle()) == CKR_OK);
  REQUIRE(count == 1);
  Bytes value;
  CHECK(raw.get(key, CKA_VALUE, value) == CKR_ATTRIBUTE_SENSITIVE);
  CHECK(raw.get_bool(key, CKA_NEVER_EXTRACTABLE));
  CHECK(raw.get_bool(key, CKA_SIGN));
  CHECK_FALSE(raw.get_bool(key, CKA_EXTRACTABLE));
  CHECK_FALSE(raw.get_bool(key, CKA_DECRYPT));
  CHECK_FALSE(raw.get_bool(key, CKA_DERIVE));
  CHECK(raw.set_bool(key, CKA_EXTRACTABLE, true) != CKR_OK);

  CHECK(hsm->sign("kekd-internal:nope", Bytes{1}).error().code() == Code::kNotFound);
}
