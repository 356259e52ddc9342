// The session pool replaces sessions that were closed under it, logs in again when the token has
// logged the application out, and never retries a PIN the token refused.
#include <doctest/doctest.h>

#include "hsm/session_pool.h"
#include "support/keyring_harness.h"
#include "support/raw_session.h"
#include "support/token_fixture.h"

using namespace kekd;
using namespace kekd::testing;

TEST_CASE("SessionClosedUnderPoolIsReplacedAndNextOperationSucceeds") {
  TokenFixture token;
  auto hsm = token.open_hsm(1);  // one session: the next operation must use the replaced slot
  REQUIRE(hsm->generate_kek("kekd:payments:1").ok());
  Bytes payload = pattern_bytes(40, 1);
  REQUIRE(hsm->wrap("kekd:payments:1", payload).ok());

  {
    auto lease = hsm->sessions().acquire();
    REQUIRE(lease.ok());
    REQUIRE(hsm->module().fn()->C_CloseSession(lease->handle()) == CKR_OK);
  }
  auto wrapped = hsm->wrap("kekd:payments:1", payload);
  REQUIRE_MESSAGE(wrapped.ok(), wrapped.error().to_string());
  CHECK(hsm->healthy());
  auto opened = hsm->unwrap("kekd:payments:1", *wrapped);
  REQUIRE(opened.ok());
  CHECK(as_bytes(*opened) == payload);
}

TEST_CASE("AllSessionsClosedLogsInAgainAndOperationsSucceed") {
  TokenFixture token;
  auto hsm = token.open_hsm(3);
  REQUIRE(hsm->generate_kek("kekd:payments:1").ok());
  auto slot = hsm->module().find_token("kekd");
  REQUIRE(slot.ok());
  // Closing every session also logs the application out of the token (PKCS#11 §5.6).
  REQUIRE(hsm->module().fn()->C_CloseAllSessions(*slot) == CKR_OK);

  Bytes payload = pattern_bytes(40, 2);
  for (int i = 0; i < 6; ++i) {  // every pooled slot gets replaced along the way
    auto wrapped = hsm->wrap("kekd:payments:1", payload);
    REQUIRE_MESSAGE(wrapped.ok(), wrapped.error().to_string());
    auto opened = hsm->unwrap("kekd:payments:1", *wrapped);
    REQUIRE(opened.ok());
    CHECK(as_bytes(*opened) == payload);
  }
  CHECK(hsm->healthy());
}

TEST_CASE("OpenFailsWithPinIncorrectAndTokenStaysUsable") {
  TokenFixture token;
  hsm::Pkcs11Config config = token.config(4);
  config.pin = SecretBytes{'0', '0', '0', '0', '0', '0'};
  auto opened = hsm::Pkcs11Hsm::open(std::move(config));
  REQUIRE_FALSE(opened.ok());
  CHECK(opened.error().code() == Code::kPinIncorrect);
  // One failed login, not one per session: the right PIN still works (no lock-out).
  CHECK(token.open_hsm(4)->random(16).ok());
}

TEST_CASE("OpenFailsClearlyForBadModuleOrTokenLabel") {
  TokenFixture token;
  hsm::Pkcs11Config missing = token.config();
  missing.module_path = "/nonexistent/libpkcs11.so";
  auto a = hsm::Pkcs11Hsm::open(std::move(missing));
  REQUIRE_FALSE(a.ok());
  CHECK(a.error().code() == Code::kUnavailable);
  CHECK(a.error().message().find("/nonexistent/libpkcs11.so") != std::string::npos);

  hsm::Pkcs11Config not_pkcs11 = token.config();
  not_pkcs11.module_path = "libsqlite3.so.0";
  auto b = hsm::Pkcs11Hsm::open(std::move(not_pkcs11));
  REQUIRE_FALSE(b.ok());
  CHECK(b.error().message().find("not a PKCS#11 module") != std::string::npos);

  hsm::Pkcs11Config label = token.config();
  label.token_label = "no-such-token";
  auto c = hsm::Pkcs11Hsm::open(std::move(label));
  REQUIRE_FALSE(c.ok());
  CHECK(c.error().code() == Code::kNotFound);
}

TEST_CASE("TransientObjectsAreDestroyedAfterWrapUnwrapAndFailures") {
  TokenFixture token;
  auto hsm = token.open_hsm(1);
  REQUIRE(hsm->generate_kek("kekd:payments:1").ok());
  Bytes payload = pattern_bytes(40, 3);
  auto wrapped = hsm->wrap("kekd:payments:1", payload);
  REQUIRE(wrapped.ok());
  REQUIRE(hsm->unwrap("kekd:payments:1", *wrapped).ok());
  Bytes tampered = *wrapped;
  tampered[5] ^= 1;
  CHECK(hsm->unwrap("kekd:payments:1", tampered).error().code() == Code::kInvalidCiphertext);

  // Count every object the application can see, session objects of the pool's session included:
  // only the KEK may remain.
  auto lease = hsm->sessions().acquire();
  REQUIRE(lease.ok());
  CK_FUNCTION_LIST* fn = hsm->module().fn();
  REQUIRE(fn->C_FindObjectsInit(lease->handle(), nullptr, 0) == CKR_OK);
  CK_OBJECT_HANDLE found[8];
  CK_ULONG count = 0;
  REQUIRE(fn->C_FindObjects(lease->handle(), found, 8, &count) == CKR_OK);
  REQUIRE(fn->C_FindObjectsFinal(lease->handle()) == CKR_OK);
  CHECK(count == 1);
}
