// Crash safety of execution (DESIGN §5, §11): a ceremony left executing is finished by
// reconcile() with exactly one result, whichever point the crash came at; and the destruction
// of versions whose waiting period has passed.
#include <doctest/doctest.h>

#include "kekd/keys/key_name.h"
#include "kekd/quorum/ceremony_service.h"
#include "support/memory_hsm.h"
#include "support/test_mandate.h"
#include "unit/quorum/service_fixture.h"

using namespace kekd;
using namespace kekd::quorum;
using namespace kekd::testing;

namespace {

struct Fixture {
  MemoryHsm hsm;
  QuorumHarness q{hsm, CeremonyOptions{.min_destroy_delay = 0}};

  // kekd restarting: a new service over the same store and keyring, reconciling first.
  void restart_and_reconcile() {
    q.flaky.fail_finish = false;
    q.service = q.open_service(q.flaky);
    Status reconciled = q.service->reconcile();
    REQUIRE_MESSAGE(reconciled.ok(), reconciled.error().to_string());
  }

  // Exactly one version made by ceremony c, and the token holds exactly `labels`.
  void expect_one_version(const Ceremony& c, std::uint32_t version,
                          std::vector<std::string> labels) {
    auto done = q.service->get(c.id());
    REQUIRE(done.ok());
    CHECK(done->state == CeremonyState::kExecuted);
    auto info = q.h.keyring().describe(c.terms.key);
    REQUIRE(info.ok());
    int made = 0;
    for (const store::KeyVersionRecord& v : info->record.versions) {
      if (v.ceremony_id == c.id()) {
        ++made;
        CHECK(v.version == version);
      }
    }
    CHECK(made == 1);
    CHECK(info->record.versions.back().version == version);
    CHECK(*hsm.find_keks("kekd:") == labels);
    // And the keyring reloaded from the store agrees with the cached one.
    auto reloaded = keys::Keyring::open(hsm, q.h.store());
    REQUIRE(reloaded.ok());
    CHECK((*reloaded)->describe(c.terms.key)->record == info->record);
  }
};

const Proposal kCreate{.action = "create-key", .key = "payments"};
const Proposal kRotate{.action = "rotate-key", .key = "payments"};

}  // namespace

// ---- create-key --------------------------------------------------------------------------

TEST_CASE_FIXTURE(Fixture, "ReconcileCreatesKeyWhenCrashCameBeforeHsmCall") {
  Ceremony c = q.propose(kCreate);
  q.approve_without_executing(c, {"alice", "bob"});
  restart_and_reconcile();
  expect_one_version(c, 1, {"kekd:payments:1"});
  CHECK(q.service->get(c.id())->result == "created key payments version 1");
}

TEST_CASE_FIXTURE(Fixture, "ReconcileAdoptsKekWhenCrashCameBetweenHsmCallAndStoreCommit") {
  Ceremony c = q.propose(kCreate);
  q.approve_without_executing(c, {"alice", "bob"});
  REQUIRE(hsm.generate_kek("kekd:payments:1").ok());  // generated, never recorded
  restart_and_reconcile();
  expect_one_version(c, 1, {"kekd:payments:1"});
}

TEST_CASE_FIXTURE(Fixture, "ReconcileIsIdempotentWhenCrashCameAfterKeyringCommit") {
  Ceremony c = q.propose(kCreate);
  q.approve_ok(c, "alice");
  q.flaky.fail_finish = true;  // the keyring commits; recording the outcome does not
  auto interrupted = q.approve(c, "bob");
  REQUIRE_FALSE(interrupted.ok());
  CHECK(q.service->get(c.id())->state == CeremonyState::kExecuting);
  CHECK(q.h.keyring().describe("payments").ok());
  restart_and_reconcile();
  expect_one_version(c, 1, {"kekd:payments:1"});
  // A second reconcile finds nothing to do.
  REQUIRE(q.service->reconcile().ok());
  expect_one_version(c, 1, {"kekd:payments:1"});
}

// ---- rotate-key --------------------------------------------------------------------------

TEST_CASE_FIXTURE(Fixture, "ReconcileRotatesWhenCrashCameBeforeHsmCall") {
  q.create_key("payments");
  Ceremony c = q.propose(kRotate);
  q.approve_without_executing(c, {"bob", "carol"});
  restart_and_reconcile();
  expect_one_version(c, 2, {"kekd:payments:1", "kekd:payments:2"});
  CHECK(q.service->get(c.id())->result == "rotated key payments to version 2");
}

TEST_CASE_FIXTURE(Fixture, "ReconcileAdoptsRotatedKekWhenCrashCameBetweenHsmCallAndStoreCommit") {
  q.create_key("payments");
  Ceremony c = q.propose(kRotate);
  q.approve_without_executing(c, {"bob", "carol"});
  REQUIRE(hsm.generate_kek("kekd:payments:2").ok());
  restart_and_reconcile();
  expect_one_version(c, 2, {"kekd:payments:1", "kekd:payments:2"});
}

TEST_CASE_FIXTURE(Fixture, "ReconcileDoesNotRotateTwiceWhenCrashCameAfterKeyringCommit") {
  q.create_key("payments");
  Ceremony c = q.propose(kRotate);
  q.approve_ok(c, "alice");
  q.flaky.fail_finish = true;
  REQUIRE_FALSE(q.approve(c, "bob").ok());
  restart_and_reconcile();
  expect_one_version(c, 2, {"kekd:payments:1", "kekd:payments:2"});
}

// ---- state changes and set-operators -----------------------------------------------------

TEST_CASE_FIXTURE(Fixture, "ReconcileFinishesStateChangeAlreadyApplied") {
  q.create_key("payments");
  const UnixMillis deadline = q.h.now + kDayMillis;
  Ceremony c = q.propose({.action = "schedule-destroy-version",
                          .key = "payments",
                          .version = 1,
                          .destroy_after = deadline});
  q.approve_ok(c, "alice");
  q.flaky.fail_finish = true;
  REQUIRE_FALSE(q.approve(c, "bob").ok());
  CHECK(q.h.keyring().describe("payments")->record.versions[0].state ==
        store::KeyState::kDestroyScheduled);
  restart_and_reconcile();
  auto done = q.service->get(c.id());
  CHECK(done->state == CeremonyState::kExecuted);
  CHECK(done->result ==
        "scheduled destruction of key payments version 1 at " + format_rfc3339(deadline));
  CHECK(q.h.keyring().describe("payments")->record.versions[0].destroy_after == deadline);
}

TEST_CASE_FIXTURE(Fixture, "ReconcileInstallsOperatorSetOfExecutingCeremony") {
  OperatorKey dave = OperatorKey::ed25519("dave");
  Ceremony c = q.propose({.action = "set-operators",
                          .operators = std::vector<Operator>{q.key("alice").op(), dave.op()},
                          .threshold = 2});
  q.approve_without_executing(c, {"alice", "carol"});
  restart_and_reconcile();
  CHECK(q.service->get(c.id())->state == CeremonyState::kExecuted);
  CHECK(q.service->operators()->find("dave") != nullptr);
}

TEST_CASE_FIXTURE(Fixture, "ReconcileLeavesCeremonyExecutingWhileHsmIsUnavailable") {
  Ceremony c = q.propose(kCreate);
  q.approve_without_executing(c, {"alice", "bob"});
  hsm.fail_with(Error(Code::kUnavailable, "token gone"));
  Status reconciled = q.service->reconcile();
  REQUIRE_FALSE(reconciled.ok());
  CHECK(reconciled.error().code() == Code::kUnavailable);
  hsm.fail_with(std::nullopt);
  CHECK(q.service->get(c.id())->state == CeremonyState::kExecuting);
  REQUIRE(q.service->tick().ok());
  expect_one_version(c, 1, {"kekd:payments:1"});
}

TEST_CASE_FIXTURE(Fixture, "ExecutionFailsWhenKekLabelIsTakenOnFirstAttempt") {
  // A first attempt (not a resume) that finds the label taken must not adopt it.
  REQUIRE(hsm.generate_kek("kekd:payments:1").ok());
  Ceremony c = q.propose(kCreate);
  q.approve_ok(c, "alice");
  auto done = q.approve(c, "bob");
  REQUIRE(done.ok());
  CHECK(done->state == CeremonyState::kFailed);
  CHECK(q.h.keyring().describe("payments").error().code() == Code::kNotFound);
}

TEST_CASE_FIXTURE(Fixture, "ExecutorRefusesCeremonyWithoutValidQuorum") {
  Ceremony c = q.propose(kCreate);
  // Two approvals in the store, one of them with a signature over something else: the store
  // counts them, the executor does not.
  REQUIRE(
      q.h.store().add_approval(c.id(), {"alice", q.key("alice").sign(c.statement), q.h.now}).ok());
  REQUIRE(q.h.store().add_approval(c.id(), {"bob", q.key("bob").sign("other"), q.h.now}).ok());
  restart_and_reconcile();
  auto done = q.service->get(c.id());
  CHECK(done->state == CeremonyState::kFailed);
  CHECK(done->result->find("lacks a valid quorum") != std::string::npos);
  CHECK(q.h.snapshot() == Snapshot{});
}

// ---- scheduled destruction ---------------------------------------------------------------

TEST_CASE_FIXTURE(Fixture, "TickDestroysVersionOnlyAfterDestroyAfter") {
  q.create_key("payments");
  q.h.rotate_key("payments");
  const UnixMillis deadline = q.h.now + kHourMillis;
  Ceremony c = q.propose({.action = "schedule-destroy-version",
                          .key = "payments",
                          .version = 1,
                          .destroy_after = deadline});
  q.approve_ok(c, "alice");
  q.approve_ok(c, "bob");

  q.h.now = deadline - 1;
  REQUIRE(q.service->tick().ok());
  CHECK(q.h.keyring().describe("payments")->record.versions[0].state ==
        store::KeyState::kDestroyScheduled);
  CHECK(hsm.find_keks("kekd:payments:")->size() == 2);

  q.h.now = deadline;
  REQUIRE(q.service->tick().ok());
  auto v1 = q.h.keyring().describe("payments")->record.versions[0];
  CHECK(v1.state == store::KeyState::kDestroyed);
  CHECK_FALSE(v1.destroy_after);
  CHECK(*hsm.find_keks("kekd:") == std::vector<std::string>{"kekd:payments:2"});
  CHECK((*keys::Keyring::open(hsm, q.h.store()))->describe("payments")->record ==
        q.h.keyring().describe("payments")->record);
}

TEST_CASE_FIXTURE(Fixture, "DestroyDueCountsKekAlreadyGoneAsDestroyed") {
  q.h.create_key("payments");
  q.h.create_key("billing");
  REQUIRE(q.h.keyring().apply(MandateForTests::schedule_destroy("payments", 1, q.h.now)).ok());
  REQUIRE(q.h.keyring().apply(MandateForTests::schedule_destroy("billing", 1, q.h.now + 1)).ok());
  REQUIRE(hsm.destroy_kek("kekd:payments:1").ok());  // a crash after the token call
  auto destroyed = q.h.keyring().destroy_due(q.h.now);
  REQUIRE(destroyed.ok());
  CHECK(*destroyed == 1);
  CHECK(q.h.keyring().describe("payments")->record.versions[0].state ==
        store::KeyState::kDestroyed);
  CHECK(q.h.keyring().describe("billing")->record.versions[0].state ==
        store::KeyState::kDestroyScheduled);
  CHECK(*q.h.keyring().destroy_due(q.h.now + 1) == 1);
  CHECK(*q.h.keyring().destroy_due(q.h.now + 1) == 0);
}

TEST_CASE_FIXTURE(Fixture, "DestroyDueLeavesRecordWhenHsmIsUnavailable") {
  q.h.create_key("payments");
  REQUIRE(q.h.keyring().apply(MandateForTests::schedule_destroy("payments", 1, q.h.now)).ok());
  hsm.fail_with(Error(Code::kUnavailable, "token gone"));
  auto destroyed = q.h.keyring().destroy_due(q.h.now);
  REQUIRE_FALSE(destroyed.ok());
  CHECK(destroyed.error().code() == Code::kUnavailable);
  hsm.fail_with(std::nullopt);
  CHECK(q.h.keyring().describe("payments")->record.versions[0].state ==
        store::KeyState::kDestroyScheduled);
  CHECK(hsm.find_keks("kekd:")->size() == 1);
}
