// AuditLog: group commit under concurrency and its wait (commit_delay), resuming, the store error
// path, checkpoints (while records arrive, not while idle, at start-up after a crash, at close),
// several writers.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <set>
#include <thread>

#include "kekd/audit/audit_log.h"
#include "unit/audit/audit_fixture.h"

using namespace kekd;
using namespace kekd::testing;
using audit::AuditLog;
using audit::AuditOptions;

namespace {

std::unique_ptr<AuditLog> open_log(store::AuditStore& store, hsm::Hsm& hsm,
                                   AuditOptions options = {}) {
  auto log = AuditLog::open(store, hsm, std::string(kAuditLabel), std::move(options));
  REQUIRE_MESSAGE(log.ok(), log.error().to_string());
  return std::move(log).value();
}

nlohmann::json stored_record(store::AuditStore& store, std::int64_t seq) {
  auto page = store.read_audit(seq - 1, 1);
  REQUIRE(page.ok());
  REQUIRE(page->records.size() == 1);
  REQUIRE(page->records[0].seq == seq);
  return nlohmann::json::parse(page->records[0].record);
}

// n events of one principal, with request ids prefix0, prefix1, ...
std::vector<audit::AuditEvent> events(const std::string& prefix, int n) {
  std::vector<audit::AuditEvent> list;
  for (int i = 0; i < n; ++i) {
    list.push_back(audit_event("app", prefix + std::to_string(i)));
  }
  return list;
}

// Polls until pred() holds, up to a generous deadline for a busy machine.
template <typename Pred>
bool eventually(Pred pred) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

}  // namespace

// Every AuditLog runs a writer and a checkpointer thread beside its callers, so every test here is
// a concurrency test (scripts/sanitizers.sh runs this suite under ThreadSanitizer).
TEST_SUITE_BEGIN("concurrency");

TEST_CASE("AuditGroupCommitUnderManyThreads") {
  AuditFixture f;
  auto log = open_log(*f.store, f.hsm);
  constexpr int kThreads = 16;
  constexpr int kPerThread = 40;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        Status s = log->record(audit_event("client-" + std::to_string(t),
                                           std::to_string(t) + "-" + std::to_string(i)));
        if (!s.ok()) {
          failures += 1;
        }
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  CHECK(failures == 0);
  require_ok(log->close());

  constexpr int kTotal = kThreads * kPerThread;
  audit::AuditStats stats = log->stats();
  CHECK(stats.records == kTotal);
  CHECK(stats.last_seq == kTotal);
  CHECK(stats.failed_records == 0);
  // The point of group commit: fewer transactions (fsyncs) than records.
  MESSAGE(kTotal << " records in " << stats.transactions << " transactions");
  CHECK(stats.transactions >= 1);
  CHECK(stats.transactions < kTotal);
  // close() covered the head.
  CHECK(stats.last_checkpoint_seq == kTotal);

  // Every record is there exactly once, contiguous from 1, and the chain verifies.
  audit::VerifyOptions strict;
  strict.require_checkpoint = true;
  audit::VerifyResult result = f.verify_store(strict);
  CHECK_MESSAGE(result.ok, result.failure);
  CHECK(result.records == kTotal);
  CHECK(result.checkpoints >= 1);
  std::set<std::string> request_ids;
  for (std::int64_t seq = 1; seq <= kTotal; ++seq) {
    request_ids.insert(stored_record(*f.store, seq)["request_id"].get<std::string>());
  }
  CHECK(request_ids.size() == kTotal);

  // And the export of the same log verifies too.
  audit::VerifyResult exported = verify_lines(export_all(*f.store), f.spki, strict);
  CHECK_MESSAGE(exported.ok, exported.failure);
  CHECK(exported.records == kTotal);
}

TEST_CASE("AuditLogResumesAfterReopeningTheStore") {
  AuditFixture f;
  std::string hash_of_3;
  {
    auto log = open_log(*f.store, f.hsm);
    for (int i = 1; i <= 3; ++i) {
      require_ok(log->record(audit_event("app", "first-" + std::to_string(i))));
    }
    require_ok(log->close());
    hash_of_3 = (*f.store->last_audit())->hash;
  }
  f.store.reset();
  f.store = f.open_store();
  {
    auto log = open_log(*f.store, f.hsm);
    CHECK(log->stats().last_seq == 3);
    CHECK(log->stats().last_checkpoint_seq == 3);
    for (int i = 1; i <= 2; ++i) {
      require_ok(log->record(audit_event("app", "second-" + std::to_string(i))));
    }
    require_ok(log->close());
    CHECK(log->stats().last_seq == 5);
  }
  nlohmann::json fourth = stored_record(*f.store, 4);
  CHECK(fourth["prev"] == hash_of_3);
  CHECK(fourth["request_id"] == "second-1");
  audit::VerifyResult result = f.verify_store();
  CHECK_MESSAGE(result.ok, result.failure);
  CHECK(result.records == 5);
  CHECK(result.checkpoints >= 2);  // at least the one at each close
  CHECK(result.uncovered == 0);

  // Reopening and closing without new records adds no checkpoint.
  {
    auto log = open_log(*f.store, f.hsm);
    require_ok(log->close());
    CHECK(log->stats().checkpoints == 0);
  }
  CHECK(f.verify_store().checkpoints == result.checkpoints);
}

TEST_CASE("AuditLogSignsTheUncoveredTailAtStartUp") {
  // A crash after records were committed and before their checkpoint: the next start covers them
  // without waiting for new records.
  AuditFixture f;
  build_log(*f.store, f.hsm, 7, 5);
  auto log = open_log(*f.store, f.hsm);
  CHECK(eventually([&] { return log->stats().last_checkpoint_seq == 7; }));
  CHECK(log->stats().checkpoints == 1);
  require_ok(log->close());
  audit::VerifyOptions strict;
  strict.require_checkpoint = true;
  audit::VerifyResult result = f.verify_store(strict);
  CHECK_MESSAGE(result.ok, result.failure);
  CHECK(result.checkpoints == 2);
}

TEST_CASE("AuditStoreErrorReachesEveryCallerOfTheBatchAndLeavesTheChain") {
  AuditFixture f;
  ControlledAuditStore store(*f.store);
  auto log = open_log(store, f.hsm);
  require_ok(log->record(audit_event("app", "before")));
  const int appends_before = store.appends_started();

  // The first failing batch is held in the store while eight more callers queue behind it.
  store.fail_appends(Error(Code::kUnavailable, "store: disk I/O error"));
  store.hold();
  std::vector<Status> results(9);
  std::vector<std::thread> threads;
  threads.emplace_back([&] { results[0] = log->record(audit_event("app", "held")); });
  store.wait_for_appends(appends_before + 1);
  for (int i = 1; i < 9; ++i) {
    threads.emplace_back(
        [&, i] { results[i] = log->record(audit_event("app", "queued-" + std::to_string(i))); });
  }
  REQUIRE(eventually([&] { return log->stats().queued == 8; }));
  store.release();
  for (std::thread& t : threads) {
    t.join();
  }
  for (const Status& s : results) {
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().code() == Code::kUnavailable);
  }
  // Two batches: the held one and the eight that queued behind it.
  CHECK(store.appends_started() == appends_before + 2);
  CHECK(log->stats().failed_records == 9);
  CHECK(log->stats().last_seq == 1);

  // The chain did not advance: the next record is seq 2, linked to record 1.
  store.fail_appends(std::nullopt);
  require_ok(log->record(audit_event("app", "after")));
  CHECK(log->stats().last_seq == 2);
  require_ok(log->close());
  nlohmann::json second = stored_record(*f.store, 2);
  CHECK(second["request_id"] == "after");
  auto first = f.store->read_audit(0, 1);
  REQUIRE(first.ok());
  CHECK(second["prev"] == first->records.at(0).hash);
  audit::VerifyResult result = f.verify_store();
  CHECK_MESSAGE(result.ok, result.failure);
  CHECK(result.records == 2);
}

TEST_CASE("AuditTwoWritersOnOneStoreNeverForkTheChain") {
  // Two logs on one database, as two processes would be: each re-sequences when the other has
  // moved the head, so the chain stays one.
  AuditFixture f;
  auto other_store = f.open_store();
  auto a = open_log(*f.store, f.hsm);
  auto b = open_log(*other_store, f.hsm);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      AuditLog& log = t % 2 == 0 ? *a : *b;
      for (int i = 0; i < 25; ++i) {
        if (!log.record(audit_event("w" + std::to_string(t), std::to_string(i))).ok()) {
          failures += 1;
        }
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  (void)a->close();
  (void)b->close();
  CHECK(failures == 0);
  audit::VerifyResult result = f.verify_store();
  CHECK_MESSAGE(result.ok, result.failure);
  CHECK(result.records == 100);
}

TEST_CASE("AuditCheckpointsWhileRecordsArriveButNotWhileIdle") {
  AuditFixture f;
  AuditOptions options;
  options.checkpoint_interval = std::chrono::milliseconds(100);
  auto log = open_log(*f.store, f.hsm, options);
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < std::chrono::milliseconds(1000)) {
    require_ok(log->record(audit_event("app", "busy")));
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const auto busy_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::steady_clock::now() - start)
                           .count();
  // The tail is covered within an interval of the last record.
  REQUIRE(eventually([&] { return log->stats().last_checkpoint_seq == log->stats().last_seq; }));
  const std::uint64_t busy_checkpoints = log->stats().checkpoints;
  MESSAGE(busy_checkpoints << " checkpoints in " << busy_ms << " ms");
  CHECK(busy_checkpoints >= 3);                                              // about one per 100 ms
  CHECK(busy_checkpoints <= static_cast<std::uint64_t>(busy_ms / 100 + 2));  // never more

  // Idle: nothing new, no checkpoint.
  std::this_thread::sleep_for(std::chrono::milliseconds(350));
  CHECK(log->stats().checkpoints == busy_checkpoints);
  require_ok(log->close());
  CHECK(log->stats().checkpoints == busy_checkpoints);  // the head was covered already
  audit::VerifyResult result = f.verify_store();
  CHECK_MESSAGE(result.ok, result.failure);
  CHECK(result.checkpoints == static_cast<std::int64_t>(busy_checkpoints));
}

TEST_CASE("AuditCheckpointFailuresDoNotStopRecords") {
  AuditFixture f;
  auto log = open_log(*f.store, f.hsm);
  // Records do not need the HSM; only checkpoints do.
  f.hsm.fail_with(Error(Code::kUnavailable, "token removed"));
  for (int i = 0; i < 5; ++i) {
    require_ok(log->record(audit_event("app", std::to_string(i))));
  }
  CHECK(eventually([&] { return log->stats().failed_checkpoints >= 1; }));
  Status closed = log->close();
  REQUIRE_FALSE(closed.ok());
  CHECK(closed.error().code() == Code::kUnavailable);
  CHECK(log->stats().last_checkpoint_seq == 0);
  f.hsm.fail_with(std::nullopt);

  // The next start signs the tail the token could not sign before.
  auto again = open_log(*f.store, f.hsm);
  require_ok(again->close());
  audit::VerifyOptions strict;
  strict.require_checkpoint = true;
  audit::VerifyResult result = f.verify_store(strict);
  CHECK_MESSAGE(result.ok, result.failure);
  CHECK(result.records == 5);
}

TEST_CASE("AuditLogRefusesBadEventsAndRecordsAfterClose") {
  AuditFixture f;
  auto log = open_log(*f.store, f.hsm);
  audit::AuditEvent bad = audit_event("app", "x");
  bad.action = "";
  Status s = log->record(bad);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().code() == Code::kInvalidArgument);
  CHECK(log->stats().last_seq == 0);

  // Hostile strings are recorded, sanitized, and the record still verifies.
  audit::AuditEvent odd = audit_event("bad\x01\xFF\"name", "req\n1");
  odd.error = Code::kUnauthenticated;
  require_ok(log->record(odd));
  require_ok(log->close());
  nlohmann::json r = stored_record(*f.store, 1);
  CHECK(r["principal"] == "bad\xEF\xBF\xBD\xEF\xBF\xBD\"name");
  CHECK(r["request_id"] ==
        "req\xEF\xBF\xBD"
        "1");
  CHECK(r["outcome"] == "error");
  CHECK(r["error"] == "unauthenticated");
  CHECK(f.verify_store().ok);

  s = log->record(audit_event("app", "late"));
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().code() == Code::kUnavailable);
  require_ok(log->close());  // idempotent

  // Opening needs the signing key in the token.
  MemoryHsm empty;
  auto no_key = AuditLog::open(*f.store, empty, std::string(kAuditLabel));
  REQUIRE_FALSE(no_key.ok());
  CHECK(no_key.error().code() == Code::kNotFound);
}

TEST_CASE("AuditTimesNeverDecreaseAlongTheChain") {
  AuditFixture f;
  std::atomic<UnixMillis> now{kAuditT0 + 10'000};
  AuditOptions options;
  options.clock = [&] { return now.load(); };
  {
    auto log = open_log(*f.store, f.hsm, options);
    require_ok(log->record(audit_event("app", "1")));
    now = kAuditT0;  // the clock steps back ten seconds
    require_ok(log->record(audit_event("app", "2")));
    require_ok(log->close());
  }
  CHECK(stored_record(*f.store, 1)["time"] == "2026-11-23T10:00:10.000Z");
  CHECK(stored_record(*f.store, 2)["time"] == "2026-11-23T10:00:10.000Z");
  // Also across a restart.
  {
    auto log = open_log(*f.store, f.hsm, options);
    require_ok(log->record(audit_event("app", "3")));
    now = kAuditT0 + 20'500;
    require_ok(log->record(audit_event("app", "4")));
    require_ok(log->close());
  }
  CHECK(stored_record(*f.store, 3)["time"] == "2026-11-23T10:00:10.000Z");
  CHECK(stored_record(*f.store, 4)["time"] == "2026-11-23T10:00:20.500Z");
  CHECK(f.verify_store().ok);
}

TEST_CASE("AuditNonDurableModeStillWritesEverything") {
  AuditFixture f;
  AuditOptions options;
  options.durable = false;
  auto log = open_log(*f.store, f.hsm, options);
  for (int i = 0; i < 200; ++i) {
    require_ok(log->record(audit_event("bench", std::to_string(i))));
  }
  require_ok(log->close());  // drains the queue
  CHECK(log->stats().records == 200);
  audit::VerifyOptions strict;
  strict.require_checkpoint = true;
  audit::VerifyResult result = f.verify_store(strict);
  CHECK_MESSAGE(result.ok, result.failure);
  CHECK(result.records == 200);
}

// The waits below are 30 s, longer than eventually()'s 20-s deadline: a test passes only if the
// writer stopped waiting for the reason it should, not because the delay ran out.
constexpr std::chrono::seconds kLongCommitDelay{30};

TEST_CASE("AuditCommitDelayWaitsForAsManyRecordsAsTheLastTransactionHeld") {
  AuditFixture f;
  // Before the log: its close(), at the end of the scope, may still call on_durable.
  std::atomic<int> durable{0};
  std::atomic<int> failed{0};
  auto on_durable = [&](Status s) { (s.ok() ? durable : failed) += 1; };
  AuditOptions options;
  options.commit_delay = kLongCommitDelay;
  auto log = open_log(*f.store, f.hsm, options);
  require_ok(log->record_all(events("first-", 4)));
  CHECK(log->stats().transactions == 1);

  // Fewer queued than the last transaction's four: the writer waits for a fourth.
  for (int i = 0; i < 3; ++i) {
    log->submit(events("next-" + std::to_string(i) + "-", 1), on_durable);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(durable == 0);
  CHECK(log->stats().records == 4);

  // The fourth fills the batch: all four commit at once, in one transaction.
  log->submit(events("last-", 1), on_durable);
  REQUIRE(eventually([&] { return durable == 4; }));
  CHECK(log->stats().transactions == 2);
  CHECK(log->stats().records == 8);
  CHECK(log->stats().commit_waits == 1);
  CHECK(log->stats().commit_wait_timeouts == 0);

  // close() ends a wait at once and still commits what waited.
  log->submit(events("closing-", 1), on_durable);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK(durable == 4);
  const auto start = std::chrono::steady_clock::now();
  require_ok(log->close());
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(20));
  CHECK(durable == 5);
  CHECK(failed == 0);
  CHECK(log->stats().records == 9);
  audit::VerifyOptions strict;
  strict.require_checkpoint = true;
  audit::VerifyResult result = f.verify_store(strict);
  CHECK_MESSAGE(result.ok, result.failure);
  CHECK(result.records == 9);
}

TEST_CASE("AuditCommitDelayEndsAndCommitsWhatCameWhenTheBatchDoesNotFill") {
  AuditFixture f;
  std::atomic<int> durable{0};
  AuditOptions options;
  options.commit_delay = std::chrono::milliseconds(50);
  auto log = open_log(*f.store, f.hsm, options);
  require_ok(log->record_all(events("first-", 4)));
  // One record after a transaction of four: the writer waits 50 ms for three more that never
  // come, then commits the one alone.
  log->submit(events("alone-", 1), [&](Status s) { durable += s.ok() ? 1 : 0; });
  REQUIRE(eventually([&] { return durable == 1; }));
  CHECK(log->stats().transactions == 2);
  CHECK(log->stats().commit_waits == 1);
  CHECK(log->stats().commit_wait_timeouts == 1);
  // A transaction of one is too few to wait after: the next record commits at once.
  require_ok(log->record(audit_event("app", "next")));
  CHECK(log->stats().commit_waits == 1);
  require_ok(log->close());
  CHECK(log->stats().records == 6);
}

TEST_CASE("AuditCommitDelayNeverWaitsAfterTransactionsOfOneToThreeRecords") {
  AuditFixture f;
  AuditOptions options;
  options.commit_delay = kLongCommitDelay;
  auto log = open_log(*f.store, f.hsm, options);
  // Transactions of one to three records are too few to wait after (one client sending single
  // requests never waits): each call below would otherwise take 30 s.
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) {
    require_ok(log->record(audit_event("app", std::to_string(i))));
  }
  require_ok(log->record_all(events("three-", 3)));
  require_ok(log->record(audit_event("app", "after-three")));
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(20));
  CHECK(log->stats().transactions == 5);
  CHECK(log->stats().commit_waits == 0);
  require_ok(log->close());
}

TEST_SUITE_END();
