// The ceremony service with the in-memory HSM and a real SQLite store: the M-of-N flow, every
// rejection (which must change nothing), expiry, cancellation, one ceremony per key.
#include <doctest/doctest.h>

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
  QuorumHarness q{hsm};
};

void expect_code(const Result<Ceremony>& r, Code code) {
  REQUIRE_FALSE(r.ok());
  CHECK_MESSAGE(r.error().code() == code, r.error().to_string());
}

const Proposal kCreate{.action = "create-key", .key = "payments"};

}  // namespace

// ---- the flow ----------------------------------------------------------------------------

TEST_CASE_FIXTURE(Fixture, "TwoOfThreeCreateKeyExecutesOnlyOnSecondApproval") {
  Ceremony c = q.propose(kCreate);
  CHECK(c.state == CeremonyState::kOpen);
  CHECK(c.approvals_needed() == 2);

  Ceremony one = q.approve_ok(c, "alice");
  CHECK(one.state == CeremonyState::kOpen);
  CHECK(one.approvals_needed() == 1);
  CHECK(q.h.keyring().describe("payments").error().code() == Code::kNotFound);
  CHECK(hsm.find_keks("kekd:")->empty());

  q.h.now += 5000;
  Ceremony two = q.approve_ok(c, "bob");
  CHECK(two.state == CeremonyState::kExecuted);
  CHECK(two.result == "created key payments version 1");
  CHECK(two.finished_at == q.h.now);
  REQUIRE(two.approvals.size() == 2);
  CHECK(two.approvals[0].operator_name == "alice");
  CHECK(two.approvals[1].operator_name == "bob");
  CHECK(two.approvals[1].at == q.h.now);
  auto key = q.h.keyring().describe("payments");
  REQUIRE(key.ok());
  REQUIRE(key->record.versions.size() == 1);
  CHECK(key->record.versions[0].ceremony_id == c.id());
  CHECK(*hsm.find_keks("kekd:") == std::vector<std::string>{"kekd:payments:1"});
}

TEST_CASE_FIXTURE(Fixture, "ProposeReturnsSignableStatementWithRandomIdAndExpiry") {
  Ceremony c = q.propose(kCreate);
  CHECK(validate_ceremony_id(c.id()).ok());
  auto parsed = parse_statement(c.statement);
  REQUIRE(parsed.ok());
  CHECK(*parsed == c.terms);
  CHECK(c.terms.proposed_at == q.h.now);
  CHECK(c.terms.expires_at == q.h.now + 24 * kHourMillis);
  CHECK(c.terms.proposed_by == "admin");
  CHECK(c.terms.operator_set == q.service->operators()->hash());
  CHECK(c.terms.threshold == 2);
  auto stored = q.service->get(c.id());
  REQUIRE(stored.ok());
  CHECK(*stored == c);
  Ceremony other = q.propose({.action = "create-key", .key = "billing"});
  CHECK(other.id() != c.id());
}

TEST_CASE_FIXTURE(Fixture, "ProposeTruncatesTimesToWholeSeconds") {
  q.h.now += 1234;
  Ceremony c = q.propose(kCreate);
  CHECK(c.terms.proposed_at == q.h.now - 234);
  CHECK(c.terms.expires_at % 1000 == 0);
}

TEST_CASE_FIXTURE(Fixture, "EveryKeyActionExecutesThroughCeremonies") {
  q.create_key("payments");
  auto run = [&](Proposal p) {
    Ceremony c = q.propose(p);
    q.approve_ok(c, "carol");
    Ceremony done = q.approve_ok(c, "bob");
    CHECK_MESSAGE(done.state == CeremonyState::kExecuted, done.result.value_or(""));
    return done.result.value_or("");
  };
  CHECK(run({.action = "rotate-key", .key = "payments"}) == "rotated key payments to version 2");
  CHECK(run({.action = "rotate-key", .key = "payments"}) == "rotated key payments to version 3");
  CHECK(run({.action = "disable-version", .key = "payments", .version = 3}) ==
        "disabled key payments version 3");
  CHECK(q.h.keyring().describe("payments")->primary_version == 2);
  CHECK(run({.action = "enable-version", .key = "payments", .version = 3}) ==
        "enabled key payments version 3");
  const UnixMillis after = q.h.now + 10 * kDayMillis;
  CHECK(run({.action = "schedule-destroy-version",
             .key = "payments",
             .version = 1,
             .destroy_after = after}) ==
        "scheduled destruction of key payments version 1 at " + format_rfc3339(after));
  auto v1 = q.h.keyring().describe("payments")->record.versions[0];
  CHECK(v1.state == store::KeyState::kDestroyScheduled);
  CHECK(v1.destroy_after == after);
  CHECK(run({.action = "cancel-destroy-version", .key = "payments", .version = 1}) ==
        "cancelled destruction of key payments version 1; the version is disabled");
  CHECK(q.h.keyring().describe("payments")->record.versions[0].state == store::KeyState::kDisabled);
  auto info = q.h.keyring().describe("payments");
  CHECK(info->record.versions[1].ceremony_id != info->record.versions[0].ceremony_id);
}

TEST_CASE_FIXTURE(Fixture, "ScheduleDestroyDefaultsToThirtyDaysAfterProposal") {
  q.create_key("payments");
  Ceremony c = q.propose({.action = "schedule-destroy-version", .key = "payments", .version = 1});
  CHECK(c.terms.destroy_after == q.h.now + 30 * kDayMillis);
}

TEST_CASE_FIXTURE(Fixture, "ProposeFailsWhenDestroyAfterIsSoonerThanMinimumDelay") {
  q.h.create_key("payments");
  auto before = q.state();
  auto early = q.service->propose({.action = "schedule-destroy-version",
                                   .key = "payments",
                                   .version = 1,
                                   .destroy_after = q.h.now + 7 * kDayMillis - 1000},
                                  "admin");
  expect_code(early, Code::kInvalidArgument);
  auto fraction = q.service->propose({.action = "schedule-destroy-version",
                                      .key = "payments",
                                      .version = 1,
                                      .destroy_after = q.h.now + 8 * kDayMillis + 1},
                                     "admin");
  expect_code(fraction, Code::kInvalidArgument);
  CHECK(q.state() == before);
  CHECK(q.service
            ->propose({.action = "schedule-destroy-version",
                       .key = "payments",
                       .version = 1,
                       .destroy_after = q.h.now + 7 * kDayMillis},
                      "admin")
            .ok());
}

// ---- proposals that are refused ------------------------------------------------------------

TEST_CASE_FIXTURE(Fixture, "ProposeFailsForUnknownAction") {
  auto before = q.state();
  expect_code(q.service->propose({.action = "delete-key", .key = "payments"}, "admin"),
              Code::kInvalidArgument);
  expect_code(q.service->propose({.action = "", .key = "payments"}, "admin"),
              Code::kInvalidArgument);
  CHECK(q.state() == before);
}

TEST_CASE_FIXTURE(Fixture, "ProposeFailsForCreateKeyOfExistingKey") {
  q.h.create_key("payments");
  auto before = q.state();
  expect_code(q.service->propose(kCreate, "admin"), Code::kAlreadyExists);
  CHECK(q.state() == before);
}

TEST_CASE_FIXTURE(Fixture, "ProposeFailsForUnknownKeyOrVersion") {
  q.h.create_key("payments");
  auto before = q.state();
  expect_code(q.service->propose({.action = "rotate-key", .key = "nope"}, "admin"),
              Code::kNotFound);
  expect_code(
      q.service->propose({.action = "disable-version", .key = "nope", .version = 1}, "admin"),
      Code::kNotFound);
  expect_code(
      q.service->propose({.action = "disable-version", .key = "payments", .version = 2}, "admin"),
      Code::kNotFound);
  CHECK(q.state() == before);
}

TEST_CASE_FIXTURE(Fixture, "ProposeFailsWhenVersionTransitionIsNotAllowed") {
  q.h.create_key("payments");
  auto before = q.state();
  for (std::string action : {"enable-version", "cancel-destroy-version"}) {
    auto r = q.service->propose({.action = action, .key = "payments", .version = 1}, "admin");
    expect_code(r, Code::kFailedPrecondition);
    CHECK(r.error().message().find("is enabled") != std::string::npos);
  }
  CHECK(q.state() == before);
}

TEST_CASE_FIXTURE(Fixture, "ProposeFailsForMissingOrSuperfluousFields") {
  q.h.create_key("payments");
  auto before = q.state();
  const std::vector<Proposal> bad = {
      {.action = "create-key"},
      {.action = "create-key", .key = "Payments"},
      {.action = "create-key", .key = "new", .version = 1},
      {.action = "rotate-key", .key = "payments", .destroy_after = q.h.now + 8 * kDayMillis},
      {.action = "disable-version", .key = "payments"},
      {.action = "disable-version", .key = "payments", .version = 0},
      {.action = "disable-version",
       .key = "payments",
       .version = 1,
       .destroy_after = q.h.now + 8 * kDayMillis},
      {.action = "rotate-key", .key = "payments", .threshold = 2},
      {.action = "rotate-key", .key = "payments", .force = true},
      {.action = "rotate-key", .key = "payments", .operators = std::vector<Operator>{}},
      {.action = "set-operators", .key = "payments"},
      {.action = "set-operators"},
      {.action = "set-operators", .operators = std::vector<Operator>{}, .threshold = 1},
  };
  for (const Proposal& p : bad) {
    auto r = q.service->propose(p, "admin");
    expect_code(r, Code::kInvalidArgument);
  }
  CHECK(q.state() == before);
}

TEST_CASE_FIXTURE(Fixture, "ProposeFailsForMalformedPrincipal") {
  auto before = q.state();
  for (std::string principal :
       std::vector<std::string>{"", "the admin", "admin\n", std::string(129, 'a')}) {
    expect_code(q.service->propose(kCreate, principal), Code::kInvalidArgument);
  }
  CHECK(q.state() == before);
}

TEST_CASE_FIXTURE(Fixture, "ProposeFailsWhenCeremonyForKeyIsAlreadyOpen") {
  Ceremony first = q.propose(kCreate);
  auto before = q.state();
  auto second = q.service->propose(kCreate, "admin");
  expect_code(second, Code::kFailedPrecondition);
  CHECK(second.error().message().find(first.id()) != std::string::npos);
  CHECK(q.state() == before);
  // Another key is independent; after cancelling, the key is free again.
  q.propose({.action = "create-key", .key = "billing"});
  REQUIRE(q.service->cancel(first.id(), "admin").ok());
  q.propose(kCreate);
}

TEST_CASE_FIXTURE(Fixture, "ProposeFailsWhileCeremonyForKeyIsExecuting") {
  Ceremony c = q.propose(kCreate);
  q.approve_without_executing(c, {"alice", "bob"});
  expect_code(q.service->propose(kCreate, "admin"), Code::kFailedPrecondition);
}

TEST_CASE("ProposeFailsBeforeOperatorSetIsInstalled") {
  MemoryHsm hsm;
  KeyringHarness h(hsm);
  auto service = CeremonyService::open(h.store(), h.keyring(), hsm, {}, [&] { return h.now; });
  REQUIRE(service.ok());
  expect_code((*service)->propose(kCreate, "admin"), Code::kFailedPrecondition);
  auto ops = (*service)->operators();
  REQUIRE_FALSE(ops.ok());
  CHECK(ops.error().code() == Code::kFailedPrecondition);
}

// ---- approvals that are refused -------------------------------------------------------------

TEST_CASE_FIXTURE(Fixture, "ApproveFailsForUnknownCeremony") {
  Ceremony c = q.propose(kCreate);
  auto before = q.state();
  auto sig = q.key("alice").sign(c.statement);
  expect_code(q.service->approve("00000000000000000000000000000000", "alice", sig),
              Code::kNotFound);
  expect_code(q.service->approve("not an id", "alice", sig), Code::kNotFound);
  CHECK(q.state() == before);
}

TEST_CASE_FIXTURE(Fixture, "ApproveFailsForOperatorOutsideTheSet") {
  Ceremony c = q.propose(kCreate);
  auto before = q.state();
  OperatorKey mallory = OperatorKey::ed25519("mallory");
  expect_code(q.service->approve(c.id(), "mallory", mallory.sign(c.statement)),
              Code::kUnknownOperator);
  expect_code(q.service->approve(c.id(), "Alice", q.key("alice").sign(c.statement)),
              Code::kUnknownOperator);
  expect_code(q.service->approve(c.id(), "", q.key("alice").sign(c.statement)),
              Code::kUnknownOperator);
  CHECK(q.state() == before);
}

TEST_CASE_FIXTURE(Fixture, "ApproveFailsForDuplicateApproval") {
  Ceremony c = q.propose(kCreate);
  q.approve_ok(c, "alice");
  auto before = q.state();
  expect_code(q.approve(c, "alice"), Code::kDuplicateApproval);
  CHECK(q.state() == before);
  CHECK(q.h.keyring().describe("payments").error().code() == Code::kNotFound);
}

TEST_CASE_FIXTURE(Fixture, "ApproveFailsWhenSignatureIsOverAnotherStatement") {
  Ceremony payments = q.propose(kCreate);
  Ceremony billing = q.propose({.action = "create-key", .key = "billing"});
  auto before = q.state();
  for (std::string name : {"alice", "bob"}) {
    expect_code(q.service->approve(billing.id(), name, q.key(name).sign(payments.statement)),
                Code::kSignatureRejected);
  }
  // A statement identical but for the id (what a replay of an old ceremony would carry).
  std::string replay = billing.statement;
  replay.replace(replay.find(billing.id()), 32, payments.id());
  expect_code(q.service->approve(billing.id(), "alice", q.key("alice").sign(replay)),
              Code::kSignatureRejected);
  CHECK(q.state() == before);
}

TEST_CASE_FIXTURE(Fixture, "ApproveFailsWhenSignatureIsByAnotherOperatorsKey") {
  Ceremony c = q.propose(kCreate);
  auto before = q.state();
  expect_code(q.service->approve(c.id(), "alice", q.key("carol").sign(c.statement)),
              Code::kSignatureRejected);
  expect_code(q.service->approve(c.id(), "carol", q.key("alice").sign(c.statement)),
              Code::kSignatureRejected);
  CHECK(q.state() == before);
}

TEST_CASE_FIXTURE(Fixture, "ApproveFailsForMalformedSignature") {
  Ceremony c = q.propose(kCreate);
  auto before = q.state();
  for (const Bytes& sig : {Bytes{}, Bytes(64, 0), Bytes(71, 0x30), Bytes(5000, 0xff)}) {
    expect_code(q.service->approve(c.id(), "alice", sig), Code::kSignatureRejected);
    expect_code(q.service->approve(c.id(), "bob", sig), Code::kSignatureRejected);
  }
  CHECK(q.state() == before);
}

TEST_CASE_FIXTURE(Fixture, "ApproveFailsWhenCeremonyIsCancelled") {
  Ceremony c = q.propose(kCreate);
  q.approve_ok(c, "alice");
  REQUIRE(q.service->cancel(c.id(), "admin").ok());
  auto before = q.state();
  expect_code(q.approve(c, "bob"), Code::kFailedPrecondition);
  CHECK(q.state() == before);
  CHECK(q.h.snapshot() == Snapshot{});
}

TEST_CASE_FIXTURE(Fixture, "ApproveFailsWhenCeremonyIsExecuted") {
  Ceremony c = q.propose(kCreate);
  q.approve_ok(c, "alice");
  q.approve_ok(c, "bob");
  auto before = q.state();
  expect_code(q.approve(c, "carol"), Code::kFailedPrecondition);
  CHECK(q.state() == before);
}

TEST_CASE_FIXTURE(Fixture, "ApproveFailsWhenCeremonyIsExecuting") {
  Ceremony c = q.propose(kCreate);
  q.approve_without_executing(c, {"alice", "bob"});
  auto before = q.state();
  expect_code(q.approve(c, "carol"), Code::kFailedPrecondition);
  CHECK(q.state() == before);
}

// ---- expiry and cancellation ---------------------------------------------------------------

TEST_CASE_FIXTURE(Fixture, "ApproveFailsAfterExpiryAndRecordsCeremonyExpired") {
  Ceremony c = q.propose(kCreate);
  q.approve_ok(c, "alice");
  q.h.now = c.terms.expires_at;
  expect_code(q.approve(c, "bob"), Code::kFailedPrecondition);
  auto stored = q.service->get(c.id());
  REQUIRE(stored.ok());
  CHECK(stored->state == CeremonyState::kExpired);
  CHECK(stored->finished_at == c.terms.expires_at);
  CHECK(stored->result == "expired with 1 of 2 approvals");
  CHECK(stored->approvals.size() == 1);
  CHECK(q.h.snapshot() == Snapshot{});
}

TEST_CASE_FIXTURE(Fixture, "ApproveSucceedsJustBeforeExpiry") {
  Ceremony c = q.propose(kCreate);
  q.approve_ok(c, "alice");
  q.h.now = c.terms.expires_at - 1;
  CHECK(q.approve_ok(c, "bob").state == CeremonyState::kExecuted);
}

TEST_CASE_FIXTURE(Fixture, "TickExpiresOpenCeremoniesPastExpiry") {
  Ceremony early = q.propose(kCreate);
  q.h.now += kHourMillis;
  Ceremony later = q.propose({.action = "create-key", .key = "billing"});
  q.h.now = early.terms.expires_at;
  REQUIRE(q.service->tick().ok());
  CHECK(q.service->get(early.id())->state == CeremonyState::kExpired);
  CHECK(q.service->get(later.id())->state == CeremonyState::kOpen);
  CHECK(*q.service->open_count() == 1);
  // The key is free for a new ceremony.
  q.propose(kCreate);
}

TEST_CASE_FIXTURE(Fixture, "CancelRecordsWhoCancelled") {
  Ceremony c = q.propose(kCreate);
  q.h.now += 1000;
  auto cancelled = q.service->cancel(c.id(), "ops-admin");
  REQUIRE(cancelled.ok());
  CHECK(cancelled->state == CeremonyState::kCancelled);
  CHECK(cancelled->result == "cancelled by ops-admin");
  CHECK(cancelled->finished_at == q.h.now);
}

TEST_CASE_FIXTURE(Fixture, "CancelFailsWhenCeremonyIsNotOpen") {
  Ceremony c = q.propose(kCreate);
  q.approve_ok(c, "alice");
  q.approve_ok(c, "bob");
  auto before = q.state();
  expect_code(q.service->cancel(c.id(), "admin"), Code::kFailedPrecondition);
  expect_code(q.service->cancel("00000000000000000000000000000000", "admin"), Code::kNotFound);
  CHECK(q.state() == before);
}

TEST_CASE_FIXTURE(Fixture, "CancelFailsAfterExpiryAndRecordsCeremonyExpired") {
  Ceremony c = q.propose(kCreate);
  q.h.now = c.terms.expires_at + 1;
  expect_code(q.service->cancel(c.id(), "admin"), Code::kFailedPrecondition);
  CHECK(q.service->get(c.id())->state == CeremonyState::kExpired);
}

// ---- execution outcomes ------------------------------------------------------------------

TEST_CASE_FIXTURE(Fixture, "KeyringRefusalMarksCeremonyFailedWithReason") {
  q.h.create_key("payments");
  Ceremony c = q.propose({.action = "disable-version", .key = "payments", .version = 1});
  // Impossible through ceremonies (one per key); stands for any refusal at execution time.
  REQUIRE(q.h.keyring().apply(MandateForTests::disable("payments", 1)).ok());
  q.approve_ok(c, "alice");
  auto done = q.approve(c, "bob");
  REQUIRE(done.ok());
  CHECK(done->state == CeremonyState::kFailed);
  REQUIRE(done->result);
  CHECK(done->result->find("is disabled; cannot disable-version") != std::string::npos);
  CHECK(*q.service->open_count() == 0);
}

TEST_CASE_FIXTURE(Fixture, "HsmOutageLeavesCeremonyExecutingUntilTickRetries") {
  Ceremony c = q.propose(kCreate);
  q.approve_ok(c, "alice");
  hsm.fail_with(Error(Code::kUnavailable, "token gone"));
  expect_code(q.approve(c, "bob"), Code::kUnavailable);
  hsm.fail_with(std::nullopt);

  auto executing = q.service->get(c.id());
  REQUIRE(executing.ok());
  CHECK(executing->state == CeremonyState::kExecuting);
  CHECK(client_state_name(executing->state) == "open");
  CHECK(executing->approvals_needed() == 0);
  CHECK(executing->approvals.size() == 2);
  auto listed = q.service->list(CeremonyState::kOpen);
  REQUIRE(listed.ok());
  REQUIRE(listed->size() == 1);
  CHECK(listed->front().id() == c.id());
  CHECK(q.h.snapshot() == Snapshot{});

  REQUIRE(q.service->tick().ok());
  auto done = q.service->get(c.id());
  CHECK(done->state == CeremonyState::kExecuted);
  CHECK(*hsm.find_keks("kekd:") == std::vector<std::string>{"kekd:payments:1"});
}

// ---- reading -----------------------------------------------------------------------------

TEST_CASE_FIXTURE(Fixture, "ListFiltersByStateOldestFirst") {
  Ceremony a = q.propose(kCreate);
  q.h.now += 1000;
  Ceremony b = q.propose({.action = "create-key", .key = "billing"});
  q.h.now += 1000;
  Ceremony c = q.propose({.action = "create-key", .key = "audit"});
  REQUIRE(q.service->cancel(b.id(), "admin").ok());
  auto all = q.service->list(std::nullopt);
  REQUIRE(all.ok());
  REQUIRE(all->size() == 3);
  CHECK((*all)[0].id() == a.id());
  CHECK((*all)[2].id() == c.id());
  auto open = q.service->list(CeremonyState::kOpen);
  REQUIRE(open->size() == 2);
  CHECK((*open)[1].id() == c.id());
  auto cancelled = q.service->list(CeremonyState::kCancelled);
  REQUIRE(cancelled->size() == 1);
  CHECK(cancelled->front().id() == b.id());
  CHECK(*q.service->open_count() == 2);
}

TEST_CASE_FIXTURE(Fixture, "GetFailsForUnknownCeremony") {
  auto r = q.service->get("00000000000000000000000000000000");
  expect_code(r, Code::kNotFound);
}

TEST_CASE("OpenFailsForNonsensicalOptions") {
  MemoryHsm hsm;
  KeyringHarness h(hsm);
  auto clock = [&] { return h.now; };
  auto open = [&](CeremonyOptions o) {
    return CeremonyService::open(h.store(), h.keyring(), hsm, o, clock);
  };
  CHECK_FALSE(open({.ttl = 0}).ok());
  CHECK_FALSE(open({.ttl = 31 * kDayMillis}).ok());
  CHECK_FALSE(open({.min_destroy_delay = -1}).ok());
  CHECK_FALSE(
      open({.min_destroy_delay = 10 * kDayMillis, .default_destroy_delay = kDayMillis}).ok());
  CHECK_FALSE(CeremonyService::open(h.store(), h.keyring(), hsm, {}, nullptr).ok());
  CHECK(open({.ttl = 1000, .min_destroy_delay = 0, .default_destroy_delay = 0}).ok());
}
