// SqliteStore's audit tables (schema migration 3): appends continue the chain head or are refused,
// checkpoints cover stored records only, pages come back in order with their checkpoints.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include "unit/audit/audit_fixture.h"

using namespace kekd;
using namespace kekd::testing;
using store::AuditCheckpointRow;
using store::AuditRecordRow;

namespace {

std::string hash_of(char c) { return std::string(64, c); }

AuditRecordRow row(std::int64_t seq, char hash) {
  return AuditRecordRow{seq, "{\"seq\":" + std::to_string(seq) + "}", hash_of(hash)};
}

void expect_code(const Status& status, Code code) {
  REQUIRE_FALSE(status.ok());
  CHECK_MESSAGE(status.error().code() == code, status.error().to_string());
}

}  // namespace

TEST_CASE("AuditStoreMigrationAddsTheAuditTables") {
  AuditFixture f;
  CHECK(*f.store->schema_version() == 3);
  CHECK(store::SqliteStore::current_schema_version() == 3);
  auto last = f.store->last_audit();
  REQUIRE(last.ok());
  CHECK_FALSE(last->has_value());
  CHECK_FALSE(f.store->last_audit_checkpoint()->has_value());
  CHECK(f.store->read_audit(0, 10)->records.empty());
}

TEST_CASE("AuditStoreAppendsOnlyWhatContinuesTheChainHead") {
  AuditFixture f;
  store::SqliteStore& s = *f.store;
  const std::string genesis(store::kAuditGenesisHash);

  // The first record must be seq 1 after the genesis hash.
  expect_code(s.append_audit(genesis, {row(2, 'a')}), Code::kFailedPrecondition);
  expect_code(s.append_audit(hash_of('f'), {row(1, 'a')}), Code::kFailedPrecondition);
  require_ok(s.append_audit(genesis, {row(1, 'a'), row(2, 'b'), row(3, 'c')}));

  // Another writer's view (stale seq or stale hash) is refused, and nothing of it is written.
  expect_code(s.append_audit(hash_of('b'), {row(3, '9')}), Code::kFailedPrecondition);
  expect_code(s.append_audit(hash_of('b'), {row(4, '9')}), Code::kFailedPrecondition);
  expect_code(s.append_audit(hash_of('c'), {row(5, '9')}), Code::kFailedPrecondition);
  require_ok(s.append_audit(hash_of('c'), {row(4, 'd')}));

  // Malformed batches.
  expect_code(s.append_audit(hash_of('d'), {}), Code::kInvalidArgument);
  expect_code(s.append_audit(hash_of('d'), {row(5, 'e'), row(7, 'f')}), Code::kInvalidArgument);
  expect_code(s.append_audit("abc", {row(5, 'e')}), Code::kInvalidArgument);
  expect_code(s.append_audit(hash_of('d'), {AuditRecordRow{5, "{}", "ABC"}}),
              Code::kInvalidArgument);
  expect_code(s.append_audit(hash_of('d'), {AuditRecordRow{5, "", hash_of('e')}}),
              Code::kInvalidArgument);
  expect_code(s.append_audit(hash_of('d'),
                             {AuditRecordRow{5, std::string(store::kMaxAuditRecordBytes + 1, 'x'),
                                             hash_of('e')}}),
              Code::kInvalidArgument);

  auto last = s.last_audit();
  REQUIRE(last.ok());
  REQUIRE(last->has_value());
  CHECK(**last == row(4, 'd'));
}

TEST_CASE("AuditStoreCheckpointsCoverStoredRecordsInIncreasingOrder") {
  AuditFixture f;
  store::SqliteStore& s = *f.store;
  require_ok(s.append_audit(std::string(store::kAuditGenesisHash),
                            {row(1, 'a'), row(2, 'b'), row(3, 'c')}));
  expect_code(s.append_audit_checkpoint({4, "{}"}, hash_of('d'), 0), Code::kFailedPrecondition);
  expect_code(s.append_audit_checkpoint({2, "{}"}, hash_of('a'), 0), Code::kFailedPrecondition);
  require_ok(s.append_audit_checkpoint({2, "{\"cp\":2}"}, hash_of('b'), 0));
  expect_code(s.append_audit_checkpoint({2, "{\"cp\":2}"}, hash_of('b'), 2),
              Code::kFailedPrecondition);
  expect_code(s.append_audit_checkpoint({1, "{\"cp\":1}"}, hash_of('a'), 2),
              Code::kFailedPrecondition);
  expect_code(s.append_audit_checkpoint({3, ""}, hash_of('c'), 2), Code::kInvalidArgument);
  // A checkpoint that names a predecessor other than the last stored one (another writer
  // checkpointed meanwhile) is refused: it would fork the chain of checkpoints.
  expect_code(s.append_audit_checkpoint({3, "{\"cp\":3}"}, hash_of('c'), 0),
              Code::kFailedPrecondition);
  require_ok(s.append_audit_checkpoint({3, "{\"cp\":3}"}, hash_of('c'), 2));
  auto last = s.last_audit_checkpoint();
  REQUIRE(last.ok());
  REQUIRE(last->has_value());
  CHECK(**last == AuditCheckpointRow{3, "{\"cp\":3}"});
}

TEST_CASE("AuditStoreReadsPagesWithTheirCheckpoints") {
  AuditFixture f;
  build_log(*f.store, f.hsm, 25, 5);

  auto page = f.store->read_audit(0, 7);
  REQUIRE(page.ok());
  REQUIRE(page->records.size() == 7);
  CHECK(page->records.front().seq == 1);
  CHECK(page->records.back().seq == 7);
  REQUIRE(page->checkpoints.size() == 1);
  CHECK(page->checkpoints[0].seq == 5);

  page = f.store->read_audit(7, 100);
  REQUIRE(page.ok());
  REQUIRE(page->records.size() == 18);
  CHECK(page->records.front().seq == 8);
  REQUIRE(page->checkpoints.size() == 4);
  CHECK(page->checkpoints[0].seq == 10);
  CHECK(page->checkpoints[3].seq == 25);

  CHECK(f.store->read_audit(25, 100)->records.empty());
  CHECK(f.store->read_audit(25, 100)->checkpoints.empty());
  CHECK(f.store->read_audit(-1, 10).error().code() == Code::kInvalidArgument);
  CHECK(f.store->read_audit(0, 0).error().code() == Code::kInvalidArgument);
  CHECK(f.store->read_audit(0, store::kMaxAuditPage + 1).error().code() == Code::kInvalidArgument);

  // The export puts each checkpoint right after its record, across page boundaries.
  std::vector<std::string> lines = export_all(*f.store, 5);
  REQUIRE(lines.size() == 30);
  CHECK(lines[4].find(R"("seq":5,"subject")") != std::string::npos);
  CHECK(lines[4].find(R"("type":"record")") != std::string::npos);
  CHECK(lines[5].find(R"("type":"checkpoint")") != std::string::npos);
  CHECK(lines[5].find(R"("seq":5,"signature")") != std::string::npos);
  CHECK(lines[6].find(R"("seq":6,"subject")") != std::string::npos);
}

TEST_CASE("AuditStoreDataSurvivesReopening") {
  AuditFixture f;
  std::string last_hash = build_log(*f.store, f.hsm, 12, 4);
  f.store.reset();
  f.store = f.open_store();
  auto last = f.store->last_audit();
  REQUIRE(last.ok());
  REQUIRE(last->has_value());
  CHECK((*last)->seq == 12);
  CHECK((*last)->hash == last_hash);
  CHECK((*f.store->last_audit_checkpoint())->seq == 12);
}

// The audit statements are prepared once and reused (sqlite_util.h, StatementCache). A reused
// SELECT that found its row must still be reset after each call: otherwise it would hold a read
// transaction open, and no other connection could ever truncate the write-ahead log.
TEST_CASE("AuditStoreHoldsNoReadTransactionBetweenCalls") {
  AuditFixture f;
  const std::string genesis(store::kAuditGenesisHash);
  require_ok(f.store->append_audit(genesis, {row(1, 'a'), row(2, 'b')}));
  require_ok(f.store->append_audit(hash_of('b'), {row(3, 'c')}));
  auto last = f.store->last_audit();
  REQUIRE(last.ok());
  REQUIRE(last->has_value());
  CHECK((*last)->seq == 3);

  sqlite3* other = nullptr;
  REQUIRE(sqlite3_open(f.db_path().c_str(), &other) == SQLITE_OK);
  // A first read opens the write-ahead log on this connection; until then it has none to truncate.
  REQUIRE(sqlite3_exec(other, "SELECT count(*) FROM audit_records", nullptr, nullptr, nullptr) ==
          SQLITE_OK);
  int log_frames = -1;
  int checkpointed = -1;
  int rc = sqlite3_wal_checkpoint_v2(other, nullptr, SQLITE_CHECKPOINT_TRUNCATE, &log_frames,
                                     &checkpointed);
  CHECK_MESSAGE(rc == SQLITE_OK, sqlite3_errmsg(other));
  CHECK(log_frames == 0);
  sqlite3_close(other);

  // And the store goes on appending after another connection truncated its log.
  require_ok(f.store->append_audit(hash_of('c'), {row(4, 'd')}));
  CHECK((*f.store->last_audit())->seq == 4);
}
