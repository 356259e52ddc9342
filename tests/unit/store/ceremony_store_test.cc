// SqliteStore as a CeremonyStore: schema migration 2, and the rules the store itself enforces
// in one transaction each (set in force, one ceremony in flight per key, approvals, finishing).
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <atomic>
#include <thread>

#include "kekd/store/sqlite_store.h"
#include "support/temp_dir.h"

namespace kekd::store {
namespace {

using kekd::testing::TempDir;

constexpr UnixMillis kNow = 1'795'000'000'000;

std::unique_ptr<SqliteStore> open_store(const std::string& path) {
  auto store = SqliteStore::open(path);
  REQUIRE_MESSAGE(store.ok(), store.error().to_string());
  return std::move(store).value();
}

void require_ok(const Status& status) { REQUIRE_MESSAGE(status.ok(), status.error().to_string()); }

void expect_code(const Status& status, Code code) {
  REQUIRE_FALSE(status.ok());
  CHECK_MESSAGE(status.error().code() == code, status.error().to_string());
}

OperatorSetRecord make_set(char fill, std::uint32_t threshold = 2) {
  return {"sha256:" + std::string(64, fill), std::string("canonical ") + fill + "\n", threshold};
}

CeremonyRecord make_ceremony(const std::string& id, const std::string& key,
                             const OperatorSetRecord& set) {
  CeremonyRecord c;
  c.id = id;
  c.action = key.empty() ? "set-operators" : "create-key";
  c.key = key;
  c.operator_set_hash = set.hash;
  c.threshold = set.threshold;
  c.statement = "statement of " + id + "\n";
  c.proposed_by = "admin";
  c.created_at = kNow;
  c.expires_at = kNow + 86'400'000;
  return c;
}

ApprovalRecord approval(const std::string& name, UnixMillis at = kNow + 1) {
  return {name, Bytes{0x30, static_cast<std::uint8_t>(name.size())}, at};
}

struct Fixture {
  TempDir dir;
  std::unique_ptr<SqliteStore> store = open_store(dir.file("kekd.db"));
  OperatorSetRecord set = make_set('a');
  Fixture() { require_ok(store->init_operator_set(set, kNow)); }

  CeremonyRecord find(const std::string& id) {
    auto found = store->find_ceremony(id);
    REQUIRE(found.ok());
    REQUIRE(found->has_value());
    return **found;
  }
};

}  // namespace

TEST_CASE("MigrationTwoUpgradesVersionOneFileKeepingKeys") {
  TempDir dir;
  const std::string path = dir.file("old.db");
  {
    // A file exactly as kekd with schema version 1 left it.
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    const char* v1 = R"sql(
CREATE TABLE keys (name TEXT NOT NULL PRIMARY KEY, id TEXT NOT NULL UNIQUE,
                   created_at INTEGER NOT NULL);
CREATE TABLE key_versions (
  key_name TEXT NOT NULL REFERENCES keys(name),
  version INTEGER NOT NULL CHECK (version >= 1),
  state TEXT NOT NULL CHECK (state IN ('enabled', 'disabled', 'destroy_scheduled', 'destroyed')),
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
  ceremony_id TEXT NOT NULL DEFAULT '', destroy_after INTEGER,
  PRIMARY KEY (key_name, version),
  CHECK ((state = 'destroy_scheduled') = (destroy_after IS NOT NULL)));
INSERT INTO keys VALUES ('payments', 'id-1', 1);
INSERT INTO key_versions VALUES ('payments', 1, 'enabled', 1, 1, 'c1', NULL);
PRAGMA user_version = 1;
)sql";
    REQUIRE(sqlite3_exec(db, v1, nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  auto store = open_store(path);
  CHECK(*store->schema_version() == SqliteStore::current_schema_version());
  CHECK(store->find_key("payments")->has_value());
  CHECK_FALSE(store->current_operator_set()->has_value());
  require_ok(store->init_operator_set(make_set('a'), kNow));
  CHECK(store->list_clients()->empty());
}

TEST_CASE_FIXTURE(Fixture, "InitOperatorSetFailsWhenSetIsInstalled") {
  expect_code(store->init_operator_set(make_set('b'), kNow), Code::kFailedPrecondition);
  CHECK(**store->current_operator_set() == set);
  auto history = store->operator_set_history();
  REQUIRE(history->size() == 1);
  CHECK((*history)[0] == OperatorSetChange{1, set.hash, kNow, ""});
}

TEST_CASE_FIXTURE(Fixture, "CreateCeremonyThenFindReturnsAllFields") {
  CeremonyRecord c = make_ceremony("c1", "payments", set);
  require_ok(store->create_ceremony(c));
  CHECK(find("c1") == c);
  CHECK_FALSE(store->find_ceremony("c2")->has_value());
}

TEST_CASE_FIXTURE(Fixture, "CreateCeremonyFailsWhenSetIsNotInForce") {
  expect_code(store->create_ceremony(make_ceremony("c1", "payments", make_set('b'))),
              Code::kFailedPrecondition);
  CHECK(store->list_ceremonies(std::nullopt)->empty());
}

TEST_CASE_FIXTURE(Fixture, "CreateCeremonyFailsWhileKeyHasCeremonyInFlight") {
  require_ok(store->create_ceremony(make_ceremony("c1", "payments", set)));
  expect_code(store->create_ceremony(make_ceremony("c2", "payments", set)),
              Code::kFailedPrecondition);
  require_ok(store->create_ceremony(make_ceremony("c3", "billing", set)));
  require_ok(store->create_ceremony(make_ceremony("s1", "", set)));
  expect_code(store->create_ceremony(make_ceremony("s2", "", set)), Code::kFailedPrecondition);
  // Executing still counts as in flight; finished does not.
  REQUIRE(store->add_approval("c1", approval("alice")).ok());
  REQUIRE(store->add_approval("c1", approval("bob")).ok());
  expect_code(store->create_ceremony(make_ceremony("c4", "payments", set)),
              Code::kFailedPrecondition);
  require_ok(store->finish_ceremony("c1", CeremonyState::kExecuting, CeremonyState::kExecuted,
                                    kNow + 2, "done"));
  require_ok(store->create_ceremony(make_ceremony("c5", "payments", set)));
}

TEST_CASE_FIXTURE(Fixture, "CreateCeremonyFailsWhenIdIsTaken") {
  require_ok(store->create_ceremony(make_ceremony("c1", "payments", set)));
  expect_code(store->create_ceremony(make_ceremony("c1", "billing", set)), Code::kAlreadyExists);
}

TEST_CASE_FIXTURE(Fixture, "CreateCeremonyFailsForOutOfBoundsRecord") {
  auto bad = [&](auto mutate) {
    CeremonyRecord c = make_ceremony("c1", "payments", set);
    mutate(c);
    expect_code(store->create_ceremony(c), Code::kInvalidArgument);
  };
  bad([](CeremonyRecord& c) { c.id = ""; });
  bad([](CeremonyRecord& c) { c.statement = ""; });
  bad([](CeremonyRecord& c) { c.statement = std::string(kMaxStoredStatementBytes + 1, 'x'); });
  bad([](CeremonyRecord& c) { c.threshold = 0; });
  bad([](CeremonyRecord& c) { c.expires_at = c.created_at; });
  bad([](CeremonyRecord& c) { c.state = CeremonyState::kExecuted; });
  bad([](CeremonyRecord& c) { c.result = "x"; });
  bad([](CeremonyRecord& c) { c.approvals.push_back(approval("alice")); });
  CHECK(store->list_ceremonies(std::nullopt)->empty());
}

TEST_CASE_FIXTURE(Fixture, "AddApprovalMovesToExecutingAtThreshold") {
  require_ok(store->create_ceremony(make_ceremony("c1", "payments", set)));
  auto first = store->add_approval("c1", approval("alice"));
  REQUIRE(first.ok());
  CHECK(first->state == CeremonyState::kOpen);
  auto second = store->add_approval("c1", approval("bob", kNow + 2));
  REQUIRE(second.ok());
  CHECK(second->state == CeremonyState::kExecuting);
  REQUIRE(second->approvals.size() == 2);
  CHECK(second->approvals[0] == approval("alice"));
  CHECK(second->approvals[1] == approval("bob", kNow + 2));
  CHECK(find("c1") == *second);
}

TEST_CASE_FIXTURE(Fixture, "AddApprovalFailsAndChangesNothing") {
  require_ok(store->create_ceremony(make_ceremony("c1", "payments", set)));
  REQUIRE(store->add_approval("c1", approval("alice")).ok());
  const CeremonyRecord before = find("c1");
  auto dup = store->add_approval("c1", approval("alice", kNow + 5));
  REQUIRE_FALSE(dup.ok());
  CHECK(dup.error().code() == Code::kDuplicateApproval);
  auto late = store->add_approval("c1", approval("bob", before.expires_at));
  REQUIRE_FALSE(late.ok());
  CHECK(late.error().code() == Code::kFailedPrecondition);
  auto unknown = store->add_approval("nope", approval("bob"));
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.error().code() == Code::kNotFound);
  auto empty = store->add_approval("c1", ApprovalRecord{"bob", {}, kNow});
  REQUIRE_FALSE(empty.ok());
  CHECK(empty.error().code() == Code::kInvalidArgument);
  CHECK(find("c1") == before);
  require_ok(store->finish_ceremony("c1", CeremonyState::kOpen, CeremonyState::kCancelled, kNow + 3,
                                    "cancelled by admin"));
  auto closed = store->add_approval("c1", approval("bob"));
  REQUIRE_FALSE(closed.ok());
  CHECK(closed.error().code() == Code::kFailedPrecondition);
}

TEST_CASE_FIXTURE(Fixture, "ConcurrentApprovalsReachThresholdExactlyOnce" *
                               doctest::test_suite("concurrency")) {
  require_ok(store->create_ceremony(make_ceremony("c1", "payments", set)));
  std::atomic<int> accepted{0};
  std::atomic<int> reached{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      auto r = store->add_approval("c1", approval("op" + std::to_string(i)));
      if (r.ok()) {
        ++accepted;
        if (r->state == CeremonyState::kExecuting && r->approvals.size() == 2) ++reached;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  CHECK(accepted == 2);
  CHECK(reached == 1);
  CHECK(find("c1").approvals.size() == 2);
}

TEST_CASE_FIXTURE(Fixture, "FinishCeremonyFailsForWrongStateOrTransition") {
  require_ok(store->create_ceremony(make_ceremony("c1", "payments", set)));
  const CeremonyRecord before = find("c1");
  expect_code(
      store->finish_ceremony("c1", CeremonyState::kOpen, CeremonyState::kExecuted, kNow, "done"),
      Code::kInvalidArgument);
  expect_code(
      store->finish_ceremony("c1", CeremonyState::kExecuting, CeremonyState::kFailed, kNow, "nope"),
      Code::kFailedPrecondition);
  expect_code(store->finish_ceremony("c1", CeremonyState::kOpen, CeremonyState::kCancelled, kNow,
                                     "two\nlines"),
              Code::kInvalidArgument);
  expect_code(
      store->finish_ceremony("c1", CeremonyState::kOpen, CeremonyState::kCancelled, kNow, ""),
      Code::kInvalidArgument);
  expect_code(
      store->finish_ceremony("zz", CeremonyState::kOpen, CeremonyState::kCancelled, kNow, "x"),
      Code::kNotFound);
  CHECK(find("c1") == before);
  require_ok(store->finish_ceremony("c1", CeremonyState::kOpen, CeremonyState::kExpired,
                                    before.expires_at, "expired with 0 of 2 approvals"));
  CeremonyRecord expired = find("c1");
  CHECK(expired.state == CeremonyState::kExpired);
  CHECK(expired.finished_at == before.expires_at);
  CHECK(expired.result == "expired with 0 of 2 approvals");
  expect_code(
      store->finish_ceremony("c1", CeremonyState::kOpen, CeremonyState::kCancelled, kNow, "x"),
      Code::kFailedPrecondition);
}

TEST_CASE_FIXTURE(Fixture, "ChangeOperatorSetInstallsFinishesAndCancelsOthersInOneCommit") {
  require_ok(store->create_ceremony(make_ceremony("s1", "", set)));
  require_ok(store->create_ceremony(make_ceremony("c1", "payments", set)));
  require_ok(store->create_ceremony(make_ceremony("c2", "billing", set)));
  REQUIRE(store->add_approval("c2", approval("alice")).ok());
  REQUIRE(store->add_approval("c2", approval("bob")).ok());  // executing: stands
  expect_code(store->change_operator_set("s1", make_set('b'), kNow + 9, "installed", "changed"),
              Code::kFailedPrecondition);  // not executing yet
  REQUIRE(store->add_approval("s1", approval("alice")).ok());
  REQUIRE(store->add_approval("s1", approval("bob")).ok());
  require_ok(store->change_operator_set("s1", make_set('b'), kNow + 9, "installed", "changed"));

  CHECK(**store->current_operator_set() == make_set('b'));
  CHECK(store->operator_set_history()->back() ==
        OperatorSetChange{2, make_set('b').hash, kNow + 9, "s1"});
  CHECK(find("s1").state == CeremonyState::kExecuted);
  CHECK(find("s1").result == "installed");
  CHECK(find("c1").state == CeremonyState::kCancelled);
  CHECK(find("c1").result == "changed");
  CHECK(find("c2").state == CeremonyState::kExecuting);
  // New ceremonies must name the new set.
  expect_code(store->create_ceremony(make_ceremony("c3", "payments", set)),
              Code::kFailedPrecondition);
  require_ok(store->create_ceremony(make_ceremony("c3", "payments", make_set('b'))));
}

TEST_CASE_FIXTURE(Fixture, "ChangeOperatorSetBackToAnEarlierSetKeepsOneCopy") {
  require_ok(store->create_ceremony(make_ceremony("s1", "", set)));
  REQUIRE(store->add_approval("s1", approval("alice")).ok());
  REQUIRE(store->add_approval("s1", approval("bob")).ok());
  require_ok(store->change_operator_set("s1", make_set('b'), kNow + 1, "to b", "changed"));
  require_ok(store->create_ceremony(make_ceremony("s2", "", make_set('b'))));
  REQUIRE(store->add_approval("s2", approval("alice")).ok());
  REQUIRE(store->add_approval("s2", approval("bob")).ok());
  require_ok(store->change_operator_set("s2", set, kNow + 2, "back to a", "changed"));
  CHECK(**store->current_operator_set() == set);
  CHECK(store->operator_set_history()->size() == 3);
  // The same hash with other content is refused.
  OperatorSetRecord forged = set;
  forged.canonical = "forged\n";
  require_ok(store->create_ceremony(make_ceremony("s3", "", set)));
  REQUIRE(store->add_approval("s3", approval("alice")).ok());
  REQUIRE(store->add_approval("s3", approval("bob")).ok());
  expect_code(store->change_operator_set("s3", forged, kNow + 3, "x", "y"), Code::kInternal);
  CHECK(find("s3").state == CeremonyState::kExecuting);
}

TEST_CASE_FIXTURE(Fixture, "ListCeremoniesFiltersByStateOldestFirst") {
  CeremonyRecord late = make_ceremony("a-late", "payments", set);
  late.created_at = kNow + 10;
  late.expires_at = kNow + 100;
  require_ok(store->create_ceremony(late));
  require_ok(store->create_ceremony(make_ceremony("z-early", "billing", set)));
  auto all = store->list_ceremonies(std::nullopt);
  REQUIRE(all->size() == 2);
  CHECK((*all)[0].id == "z-early");
  require_ok(
      store->finish_ceremony("a-late", CeremonyState::kOpen, CeremonyState::kCancelled, kNow, "x"));
  CHECK(store->list_ceremonies(CeremonyState::kOpen)->size() == 1);
  CHECK(store->list_ceremonies(CeremonyState::kCancelled)->front().id == "a-late");
  CHECK(store->list_ceremonies(CeremonyState::kFailed)->empty());
}

TEST_CASE("CeremonyStateNamesRoundTrip") {
  for (CeremonyState s :
       {CeremonyState::kOpen, CeremonyState::kExecuting, CeremonyState::kExecuted,
        CeremonyState::kCancelled, CeremonyState::kExpired, CeremonyState::kFailed}) {
    CHECK(parse_ceremony_state(ceremony_state_name(s)) == s);
  }
  CHECK_FALSE(parse_ceremony_state("Open"));
}

}  // namespace kekd::store
