// Ceremonies against SoftHSM through the real PKCS#11 module, a fresh token per test case: the
// KEK appears in the token only with the M-th approval, and mixed Ed25519 / ECDSA P-256
// operators approve a rotation.
#include <doctest/doctest.h>

#include "kekd/quorum/ceremony_service.h"
#include "support/raw_session.h"
#include "support/token_fixture.h"
#include "unit/quorum/service_fixture.h"

using namespace kekd;
using namespace kekd::quorum;
using namespace kekd::testing;

TEST_CASE("TwoOfThreeCreateKeyMakesTokenObjectOnlyAtSecondApproval") {
  TokenFixture token;
  std::unique_ptr<hsm::Pkcs11Hsm> hsm = token.open_hsm(2);
  QuorumHarness q(*hsm);

  Ceremony c = q.propose({.action = "create-key", .key = "payments"});
  CHECK(q.approve_ok(c, "alice").state == CeremonyState::kOpen);
  CHECK(hsm->find_keks("kekd:")->empty());
  CHECK_FALSE(q.h.keyring().describe("payments").ok());

  Ceremony done = q.approve_ok(c, "bob");
  CHECK(done.state == CeremonyState::kExecuted);
  CHECK(done.result == "created key payments version 1");
  CHECK(*hsm->find_keks("kekd:") == std::vector<std::string>{"kekd:payments:1"});

  // The new KEK works.
  auto wrapped = q.h.keyring().wrap("payments", pattern_bytes(32, 7), {});
  REQUIRE_MESSAGE(wrapped.ok(), wrapped.error().to_string());
  auto unwrapped = q.h.keyring().unwrap("payments", wrapped->ciphertext, {});
  REQUIRE(unwrapped.ok());
  CHECK(as_bytes(unwrapped->plaintext) == pattern_bytes(32, 7));
}

TEST_CASE("ThreeOfFiveMixedAlgorithmOperatorsRotateKey") {
  TokenFixture token;
  std::unique_ptr<hsm::Pkcs11Hsm> hsm = token.open_hsm(2);
  QuorumHarness q(
      *hsm,
      {OperatorKey::ed25519("alice"), OperatorKey::ecdsa("bob"), OperatorKey::ed25519("carol"),
       OperatorKey::ecdsa("dave"), OperatorKey::ecdsa("erin")},
      3);
  Ceremony create = q.propose({.action = "create-key", .key = "payments"});
  q.approve_ok(create, "alice");
  q.approve_ok(create, "bob");
  REQUIRE(q.approve_ok(create, "carol").state == CeremonyState::kExecuted);
  auto old = q.h.keyring().wrap("payments", pattern_bytes(24, 3), {});
  REQUIRE(old.ok());

  Ceremony rotate = q.propose({.action = "rotate-key", .key = "payments"});
  CHECK(q.approve_ok(rotate, "dave").approvals_needed() == 2);
  // A rejected approval in between changes nothing.
  auto wrong = q.service->approve(rotate.id(), "erin", q.key("bob").sign(rotate.statement));
  REQUIRE_FALSE(wrong.ok());
  CHECK(wrong.error().code() == Code::kSignatureRejected);
  CHECK(q.approve_ok(rotate, "carol").approvals_needed() == 1);
  CHECK(hsm->find_keks("kekd:")->size() == 1);
  Ceremony done = q.approve_ok(rotate, "erin");
  CHECK(done.state == CeremonyState::kExecuted);
  CHECK(done.result == "rotated key payments to version 2");
  CHECK(*hsm->find_keks("kekd:") == std::vector<std::string>{"kekd:payments:1", "kekd:payments:2"});
  CHECK(q.h.keyring().describe("payments")->primary_version == 2);
  CHECK(q.h.keyring().unwrap("payments", old->ciphertext, {}).ok());
  CHECK(q.h.keyring().wrap("payments", pattern_bytes(24, 3), {})->version == 2);
}

TEST_CASE("ReconcileAdoptsTokenObjectLeftByCrashBeforeStoreCommit") {
  TokenFixture token;
  std::unique_ptr<hsm::Pkcs11Hsm> hsm = token.open_hsm(2);
  QuorumHarness q(*hsm);
  Ceremony c = q.propose({.action = "create-key", .key = "payments"});
  q.approve_without_executing(c, {"alice", "carol"});
  REQUIRE(hsm->generate_kek("kekd:payments:1").ok());
  REQUIRE(q.service->reconcile().ok());
  CHECK(q.service->get(c.id())->state == CeremonyState::kExecuted);
  CHECK(*hsm->find_keks("kekd:") == std::vector<std::string>{"kekd:payments:1"});
  CHECK(q.h.keyring().wrap("payments", pattern_bytes(16, 1), {}).ok());
}

// The interrupted attempt's object is adopted only if it is a KEK the token generated: a key of
// known value planted under the label (by someone with the PIN, between the crash and the
// restart) fails the ceremony, and the store never records it.
TEST_CASE("ReconcileRefusesToAdoptAPlantedKeyAndTheCeremonyFails") {
  TokenFixture token;
  std::unique_ptr<hsm::Pkcs11Hsm> hsm = token.open_hsm(2);
  QuorumHarness q(*hsm);
  Ceremony c = q.propose({.action = "create-key", .key = "payments"});
  q.approve_without_executing(c, {"alice", "carol"});
  RawSession raw{*hsm};
  raw.import_known_aes_key("kekd:payments:1", Bytes(32, 0x11), /*locked_down=*/true);

  REQUIRE(q.service->reconcile().ok());
  Result<Ceremony> failed = q.service->get(c.id());
  REQUIRE(failed.ok());
  CHECK(failed->state == CeremonyState::kFailed);
  REQUIRE(failed->result);
  CHECK(failed->result->find("kekd:payments:1 by the interrupted attempt cannot be adopted") !=
        std::string::npos);
  CHECK(failed->result->find("CKA_LOCAL is false") != std::string::npos);
  CHECK_FALSE(q.h.keyring().describe("payments").ok());
  // The planted object stays for investigation (docs/operations.md).
  CHECK(*hsm->find_keks("kekd:") == std::vector<std::string>{"kekd:payments:1"});

  // The positive control: on the same token, a ceremony whose object the token generated is
  // adopted and its key works.
  Ceremony other = q.propose({.action = "create-key", .key = "orders"});
  q.approve_without_executing(other, {"alice", "bob"});
  REQUIRE(hsm->generate_kek("kekd:orders:1").ok());
  REQUIRE(q.service->reconcile().ok());
  CHECK(q.service->get(other.id())->state == CeremonyState::kExecuted);
  CHECK(q.h.keyring().wrap("orders", pattern_bytes(16, 1), {}).ok());
}
