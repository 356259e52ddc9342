// Changing the operator set by ceremony: the set is replaced (history kept), the new set and
// threshold apply from then on, and every other open ceremony is cancelled.
#include <doctest/doctest.h>

#include "kekd/quorum/ceremony_service.h"
#include "support/memory_hsm.h"
#include "unit/quorum/service_fixture.h"

using namespace kekd;
using namespace kekd::quorum;
using namespace kekd::testing;

namespace {

struct Fixture {
  MemoryHsm hsm;
  QuorumHarness q{hsm};
  OperatorKey dave = OperatorKey::ecdsa("dave");

  // alice, bob and dave; carol leaves; the threshold becomes 3.
  Proposal replace_carol_with_dave(std::uint32_t threshold = 3) {
    return {.action = "set-operators",
            .operators = std::vector<Operator>{q.key("alice").op(), q.key("bob").op(), dave.op()},
            .threshold = threshold};
  }

  Ceremony execute(const Proposal& p) {
    Ceremony c = q.propose(p);
    q.approve_ok(c, "alice");
    Ceremony done = q.approve_ok(c, "carol");
    REQUIRE_MESSAGE(done.state == CeremonyState::kExecuted, done.result.value_or(""));
    return done;
  }
};

void expect_code(const Result<Ceremony>& r, Code code) {
  REQUIRE_FALSE(r.ok());
  CHECK_MESSAGE(r.error().code() == code, r.error().to_string());
}

}  // namespace

TEST_CASE_FIXTURE(Fixture, "SetOperatorsStatementListsProposedSetAndNewThreshold") {
  Ceremony c = q.propose(replace_carol_with_dave());
  const std::string lines = "operator: " + operator_line_value(q.key("alice").op()) + "\n" +
                            "operator: " + operator_line_value(q.key("bob").op()) + "\n" +
                            "operator: " + operator_line_value(dave.op()) + "\n" +
                            "new-threshold: 3\n";
  CHECK(c.statement.find("action: set-operators\n" + lines + "operator-set: ") !=
        std::string::npos);
  CHECK(c.terms.key.empty());
  CHECK(c.terms.operator_set == q.service->operators()->hash());
}

TEST_CASE_FIXTURE(Fixture, "SetOperatorsReplacesSetAndKeepsHistory") {
  const std::string old_hash = q.service->operators()->hash();
  Ceremony done = execute(replace_carol_with_dave());
  auto now_in_force = q.service->operators();
  REQUIRE(now_in_force.ok());
  CHECK(now_in_force->threshold == 3);
  CHECK(now_in_force->find("dave") != nullptr);
  CHECK(now_in_force->find("carol") == nullptr);
  CHECK(done.result == "installed operator set " + now_in_force->hash() + " (3 of 3)");

  auto history = q.h.store().operator_set_history();
  REQUIRE(history.ok());
  REQUIRE(history->size() == 2);
  CHECK((*history)[0].hash == old_hash);
  CHECK((*history)[0].ceremony_id.empty());
  CHECK((*history)[1].hash == now_in_force->hash());
  CHECK((*history)[1].ceremony_id == done.id());
  CHECK(q.h.store().find_operator_set(old_hash)->has_value());
}

TEST_CASE_FIXTURE(Fixture, "SetOperatorsCancelsOtherOpenCeremonies") {
  Ceremony pending = q.propose({.action = "create-key", .key = "payments"});
  q.approve_ok(pending, "bob");
  Ceremony done = execute(replace_carol_with_dave());
  auto cancelled = q.service->get(pending.id());
  REQUIRE(cancelled.ok());
  CHECK(cancelled->state == CeremonyState::kCancelled);
  CHECK(cancelled->result == "operator set changed");
  CHECK(cancelled->finished_at == done.finished_at);
  // The approval it had cannot be completed under the old set any more.
  expect_code(q.approve(pending, "alice"), Code::kFailedPrecondition);
  CHECK(q.h.snapshot() == Snapshot{});
}

TEST_CASE_FIXTURE(Fixture, "RemovedOperatorIsRejectedAfterSetChange") {
  execute(replace_carol_with_dave());
  Ceremony c = q.propose({.action = "create-key", .key = "payments"});
  auto before = q.state();
  expect_code(q.approve(c, "carol"), Code::kUnknownOperator);
  CHECK(q.state() == before);
}

TEST_CASE_FIXTURE(Fixture, "NewThresholdAndNewOperatorApplyAfterSetChange") {
  execute(replace_carol_with_dave());
  Ceremony c = q.propose({.action = "create-key", .key = "payments"});
  CHECK(c.terms.threshold == 3);
  CHECK(q.approve_ok(c, "alice").state == CeremonyState::kOpen);
  auto with_dave = q.service->approve(c.id(), "dave", dave.sign(c.statement));
  REQUIRE(with_dave.ok());
  CHECK(with_dave->state == CeremonyState::kOpen);
  CHECK(with_dave->approvals_needed() == 1);
  CHECK(q.approve_ok(c, "bob").state == CeremonyState::kExecuted);
}

TEST_CASE_FIXTURE(Fixture, "ExecutingCeremonyOfOldSetStillCompletes") {
  Ceremony pending = q.propose({.action = "create-key", .key = "payments"});
  hsm.fail_with(Error(Code::kUnavailable, "token gone"));
  q.approve_ok(pending, "alice");
  expect_code(q.approve(pending, "bob"), Code::kUnavailable);
  hsm.fail_with(std::nullopt);
  execute(replace_carol_with_dave());
  REQUIRE(q.service->tick().ok());
  CHECK(q.service->get(pending.id())->state == CeremonyState::kExecuted);
}

TEST_CASE_FIXTURE(Fixture, "ProposeSetOperatorsFailsForThresholdOneUnlessForced") {
  auto before = q.state();
  expect_code(q.service->propose(replace_carol_with_dave(1), "admin"), Code::kInvalidArgument);
  CHECK(q.state() == before);
  Proposal forced = replace_carol_with_dave(1);
  forced.force = true;
  Ceremony c = q.propose(forced);
  CHECK(c.terms.new_operators->threshold == 1);
}

TEST_CASE_FIXTURE(Fixture, "ProposeSetOperatorsFailsForTheSetInForce") {
  auto before = q.state();
  Proposal same{.action = "set-operators",
                .operators = std::vector<Operator>{q.key("carol").op(), q.key("alice").op(),
                                                   q.key("bob").op()},
                .threshold = 2};
  expect_code(q.service->propose(same, "admin"), Code::kFailedPrecondition);
  CHECK(q.state() == before);
}

TEST_CASE_FIXTURE(Fixture, "ProposeSetOperatorsFailsWhileAnotherIsOpen") {
  q.propose(replace_carol_with_dave());
  expect_code(q.service->propose(replace_carol_with_dave(2), "admin"), Code::kFailedPrecondition);
  // Key ceremonies are not affected.
  q.propose({.action = "create-key", .key = "payments"});
}

TEST_CASE_FIXTURE(Fixture, "ProposeSetOperatorsFailsForDuplicateKeys") {
  Operator twin = dave.op();
  twin.name = "erin";
  Proposal p{.action = "set-operators",
             .operators = std::vector<Operator>{q.key("alice").op(), dave.op(), twin},
             .threshold = 2};
  expect_code(q.service->propose(p, "admin"), Code::kInvalidArgument);
}

TEST_CASE_FIXTURE(Fixture, "InitOperatorsFailsWhenSetIsInstalled") {
  auto set = make_operator_set({dave.op()}, 1, false);
  REQUIRE(set.ok());
  Status again = q.service->init_operators(*set);
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().code() == Code::kFailedPrecondition);
  CHECK(q.service->operators()->find("dave") == nullptr);
}
