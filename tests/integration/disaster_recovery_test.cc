// The disaster-recovery procedure of docs/ciphertext.md, run as written (its ```sh blocks,
// extracted by run_doc_procedure.sh) with only pkcs11-tool and coreutils, on ciphertexts that
// kekd's keyring produced with SoftHSM. The DEK it recovers must be the one kekd wrapped.
#include <doctest/doctest.h>

#include <botan/base64.h>

#include "support/keyring_harness.h"
#include "support/temp_dir.h"
#include "support/token_fixture.h"

using namespace kekd;
using namespace kekd::testing;

namespace {

struct Fixture {
  TokenFixture token;
  std::unique_ptr<hsm::Pkcs11Hsm> hsm = token.open_hsm(2);
  KeyringHarness h{*hsm};
  Fixture() {
    h.create_key("payments");
    h.rotate_key("payments");  // the procedure must pick the version the ciphertext names
  }

  // Runs the documented procedure; returns its output and exit status.
  std::string recover(const Bytes& ciphertext, const keys::EncryptionContext& context,
                      int& status) {
    TempDir work;
    std::string env = "PKCS11_MODULE=" + std::string(KEKD_SOFTHSM_MODULE) +
                      " PIN_FILE=" + shell_quote(token.pin_file()) + " TOKEN_LABEL=kekd" +
                      " CIPHERTEXT_B64=" + shell_quote(Botan::base64_encode(ciphertext)) +
                      " CONTEXT_HEX=" + to_hex(keys::canonical_context(context)) +
                      " WORK_DIR=" + shell_quote(work.path());
    return run_command(env + " bash " + shell_quote(std::string(KEKD_SOURCE_DIR)) +
                           "/tests/integration/run_doc_procedure.sh " +
                           shell_quote(std::string(KEKD_SOURCE_DIR) + "/docs/ciphertext.md") +
                           " 2>&1",
                       &status);
  }
};

}  // namespace

TEST_CASE_FIXTURE(Fixture, "DocumentedProcedureRecoversDekWithPkcs11Tool") {
  for (std::size_t n : {1, 20, 32, 982}) {
    for (const keys::EncryptionContext& context :
         {keys::EncryptionContext{}, keys::EncryptionContext{{"tenant", "acme"}}}) {
      Bytes dek = pattern_bytes(n, static_cast<std::uint8_t>(n + context.size()));
      auto wrapped = h.keyring().wrap("payments", dek, context);
      REQUIRE(wrapped.ok());
      int status = -1;
      std::string out = recover(wrapped->ciphertext, context, status);
      INFO("n=", n, "\n", out);
      REQUIRE(status == 0);
      CHECK(out.find("DEK: " + to_hex(dek) + "\n") != std::string::npos);
    }
  }
  // The procedure removed its temporary plaintext object: only the two KEKs remain.
  CHECK(hsm->find_keks("")->size() == 2);
}

TEST_CASE_FIXTURE(Fixture, "DocumentedProcedureStopsOnWrongContext") {
  auto wrapped = h.keyring().wrap("payments", pattern_bytes(32, 1), {{"tenant", "acme"}});
  REQUIRE(wrapped.ok());
  int status = -1;
  std::string out = recover(wrapped->ciphertext, {{"tenant", "other"}}, status);
  INFO(out);
  CHECK(status != 0);
  CHECK(out.find("STOP:") != std::string::npos);
  CHECK(out.find("DEK:") == std::string::npos);
}
