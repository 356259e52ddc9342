// SqliteStore::backup_to: the copy is a store that opens and holds every record; it never
// overwrites anything; and a copy taken while another thread writes is one consistent state.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "kekd/audit/record.h"
#include "kekd/store/sqlite_store.h"
#include "support/temp_dir.h"

namespace kekd::store {
namespace {

using kekd::testing::TempDir;

constexpr UnixMillis kNow = 1'795'000'000'000;

// The text of a failed result; doctest builds a message even for a check that passes (with -s),
// and the error of a successful result must not be read.
template <typename R>
std::string why(const R& result) {
  return result.ok() ? std::string() : result.error().to_string();
}

std::unique_ptr<SqliteStore> open_store(const std::string& path) {
  auto store = SqliteStore::open(path);
  REQUIRE_MESSAGE(store.ok(), why(store));
  return std::move(store).value();
}

void require_ok(const Status& status) { REQUIRE_MESSAGE(status.ok(), why(status)); }

void expect_code(const Status& status, Code code) {
  REQUIRE_FALSE(status.ok());
  CHECK_MESSAGE(status.error().code() == code, status.error().to_string());
}

template <typename T>
T value_of(Result<T> result) {
  REQUIRE_MESSAGE(result.ok(), why(result));
  return std::move(result).value();
}

KeyRecord make_key(const std::string& name, std::uint32_t versions) {
  KeyRecord key{name, name + "-id", kNow, {}};
  for (std::uint32_t v = 1; v <= versions; ++v) {
    key.versions.push_back(
        {v, KeyState::kEnabled, kNow + v, kNow + v, "c" + std::to_string(v), std::nullopt});
  }
  return key;
}

ClientRecord make_client(const std::string& id) {
  return {id,   Bytes(40, 0xab), false, R"([{"key":"alpha","operations":["wrap"]}])",
          kNow, std::nullopt};
}

CeremonyRecord make_ceremony(const std::string& id, const std::string& key,
                             const OperatorSetRecord& set) {
  CeremonyRecord c;
  c.id = id;
  c.action = "create-key";
  c.key = key;
  c.operator_set_hash = set.hash;
  c.threshold = set.threshold;
  c.statement = "statement of " + id + "\n";
  c.proposed_by = "admin";
  c.created_at = kNow;
  c.expires_at = kNow + 60'000;
  return c;
}

// An audit chain as the log writes it, in miniature: each record names the hash of the one
// before, and its hash is the SHA-256 of its text. `filler` makes records large, so the store
// spans many backup steps.
struct Chain {
  std::int64_t seq = 0;
  std::string head = std::string(kAuditGenesisHash);

  std::vector<AuditRecordRow> next(std::size_t count, std::size_t filler = 0) {
    std::vector<AuditRecordRow> rows;
    for (std::size_t i = 0; i < count; ++i) {
      AuditRecordRow row;
      row.seq = ++seq;
      row.record = "{\"prev\":\"" + head + "\",\"seq\":" + std::to_string(row.seq) + ",\"pad\":\"" +
                   std::string(filler, 'x') + "\"}";
      row.hash = audit::sha256_hex(row.record);
      head = row.hash;
      rows.push_back(std::move(row));
    }
    return rows;
  }

  Status append(SqliteStore& store, std::size_t count, std::size_t filler = 0) {
    std::string prev = head;
    return store.append_audit(prev, next(count, filler));
  }
};

std::vector<AuditRecordRow> all_audit(SqliteStore& store) {
  std::vector<AuditRecordRow> rows;
  for (;;) {
    AuditPage page = value_of(store.read_audit(rows.empty() ? 0 : rows.back().seq, kMaxAuditPage));
    if (page.records.empty()) return rows;
    rows.insert(rows.end(), page.records.begin(), page.records.end());
  }
}

// The chain of Chain above holds: seqs 1..n without a gap, each record linked to the hash of the
// one before, each hash that of its text.
void check_chain(const std::vector<AuditRecordRow>& rows) {
  std::string head(kAuditGenesisHash);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    INFO("record " << rows[i].seq);
    REQUIRE(rows[i].seq == static_cast<std::int64_t>(i + 1));
    REQUIRE(rows[i].record.starts_with("{\"prev\":\"" + head + "\""));
    REQUIRE(rows[i].hash == audit::sha256_hex(rows[i].record));
    head = rows[i].hash;
  }
}

// A store holding something of every kind: keys with versions, clients (one deleted), the
// operator set, an executed and an expired ceremony with their approvals, audit records and a
// checkpoint.
struct Populated {
  TempDir dir;
  std::unique_ptr<SqliteStore> store = open_store(dir.file("kekd.db"));
  OperatorSetRecord set{"sha256:" + std::string(64, 'a'), "canonical set\n", 2};

  Populated() {
    require_ok(store->create_key(make_key("alpha", 2)));
    require_ok(store->create_key(make_key("beta", 1)));
    require_ok(store->create_client(make_client("app-1")));
    require_ok(store->create_client(make_client("app-2")));
    require_ok(store->delete_client("app-2", kNow + 5));
    require_ok(store->init_operator_set(set, kNow));
    require_ok(store->create_ceremony(make_ceremony(std::string(32, '1'), "gamma", set)));
    value_of(store->add_approval(std::string(32, '1'), {"alice", Bytes{0x30, 1}, kNow + 1}));
    value_of(store->add_approval(std::string(32, '1'), {"bob", Bytes{0x30, 2}, kNow + 2}));
    require_ok(store->finish_ceremony(std::string(32, '1'), CeremonyState::kExecuting,
                                      CeremonyState::kExecuted, kNow + 3, "created gamma v1"));
    require_ok(store->create_ceremony(make_ceremony(std::string(32, '2'), "delta", set)));
    value_of(store->add_approval(std::string(32, '2'), {"carol", Bytes{0x30, 3}, kNow + 4}));
    require_ok(store->finish_ceremony(std::string(32, '2'), CeremonyState::kOpen,
                                      CeremonyState::kExpired, kNow + 60'000,
                                      "expired with 1 of 2 approvals"));
    Chain chain;
    require_ok(chain.append(*store, 5));
    require_ok(store->append_audit_checkpoint({5, "{\"checkpoint\":5}"}, chain.head, 0));
  }
};

}  // namespace

TEST_CASE_FIXTURE(Populated, "BackupCopyOpensWithEveryRecordOfEveryKind") {
  const std::string copy_path = dir.file("copy.db");
  require_ok(store->backup_to(copy_path));

  auto copy = open_store(copy_path);
  CHECK(value_of(copy->schema_version()) == SqliteStore::current_schema_version());
  CHECK(value_of(copy->list_keys()) == value_of(store->list_keys()));
  CHECK(value_of(copy->list_clients()) == value_of(store->list_clients()));
  // A deleted client stays deleted, and its id stays taken.
  CHECK_FALSE(value_of(copy->find_client("app-2")).has_value());
  expect_code(copy->create_client(make_client("app-2")), Code::kAlreadyExists);
  CHECK(value_of(copy->current_operator_set()) == value_of(store->current_operator_set()));
  CHECK(value_of(copy->operator_set_history()) == value_of(store->operator_set_history()));
  auto ceremonies = value_of(copy->list_ceremonies(std::nullopt));
  CHECK(ceremonies == value_of(store->list_ceremonies(std::nullopt)));
  REQUIRE(ceremonies.size() == 2);
  CHECK(ceremonies[0].state == CeremonyState::kExecuted);
  CHECK(ceremonies[0].approvals.size() == 2);
  CHECK(ceremonies[1].state == CeremonyState::kExpired);
  auto copied = value_of(copy->read_audit(0, 100));
  auto original = value_of(store->read_audit(0, 100));
  CHECK(copied.records == original.records);
  CHECK(copied.checkpoints == original.checkpoints);
  CHECK(copied.records.size() == 5);
  CHECK(copied.checkpoints.size() == 1);
}

TEST_CASE_FIXTURE(Populated, "BackupCopyIsPrivateAndStandsAlone") {
  const std::string copy_path = dir.file("copy.db");
  require_ok(store->backup_to(copy_path));
  struct stat st;
  REQUIRE(::stat(copy_path.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);
  // One file: no journal or WAL beside it that a restore would have to carry along, and a
  // rollback journal in its header (bytes 18 and 19 are 1; 2 is WAL), so that reading it needs
  // no -shm file beside it either.
  for (const char* sidecar : {"-journal", "-wal", "-shm"}) {
    CHECK_FALSE(std::filesystem::exists(copy_path + sidecar));
  }
  std::ifstream in(copy_path, std::ios::binary);
  char header[20] = {};
  REQUIRE(in.read(header, sizeof header));
  CHECK(header[18] == 1);
  CHECK(header[19] == 1);
  // Later writes to the store do not reach the copy.
  require_ok(store->create_key(make_key("later", 1)));
  CHECK_FALSE(value_of(open_store(copy_path)->find_key("later")).has_value());
}

TEST_CASE_FIXTURE(Populated, "BackupFailsWhenPathExistsAndLeavesItAlone") {
  const std::string taken = dir.file("taken.db");
  std::ofstream(taken) << "precious";
  expect_code(store->backup_to(taken), Code::kAlreadyExists);
  std::ifstream in(taken);
  CHECK(std::string(std::istreambuf_iterator<char>(in), {}) == "precious");

  // The store's own file is no exception.
  expect_code(store->backup_to(dir.file("kekd.db")), Code::kAlreadyExists);
  CHECK(value_of(store->list_keys()).size() == 2);
}

TEST_CASE_FIXTURE(Populated, "BackupFailsWhenAStaleJournalSitsAtThePath") {
  // SQLite would roll a hot journal of that name back into the new copy.
  const std::string path = dir.file("copy.db");
  std::ofstream(path + "-journal") << "stale";
  expect_code(store->backup_to(path), Code::kAlreadyExists);
  CHECK_FALSE(std::filesystem::exists(path));
}

TEST_CASE_FIXTURE(Populated, "BackupFailsIntoMissingDirectoryWritingNothing") {
  const std::string path = dir.file("missing/copy.db");
  Status status = store->backup_to(path);
  expect_code(status, Code::kInvalidArgument);
  CHECK(status.error().message().find(path) != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(dir.file("missing")));
}

TEST_CASE("BackupWhileAnotherThreadWritesIsOneConsistentState" *
          doctest::test_suite("concurrency")) {
  TempDir dir;
  auto store = open_store(dir.file("kekd.db"));
  // About 4 MiB of records first: the copy then takes many steps, and writes land between them.
  Chain chain;
  for (int i = 0; i < 40; ++i) {
    require_ok(chain.append(*store, 10, 10'000));
  }
  const std::int64_t prefilled = chain.seq;

  // Each round creates client i and then appends the 3 audit records of round i, in two
  // transactions: a consistent copy holds either both of round i or only its client.
  std::atomic<bool> stop = false;
  std::atomic<int> rounds = 0;
  std::atomic<bool> failed = false;
  std::thread writer([&] {
    for (int i = 1; !stop; ++i) {
      if (!store->create_client(make_client("c" + std::to_string(i))).ok() ||
          !chain.append(*store, 3, 100).ok()) {
        failed = true;
        return;
      }
      rounds = i;
    }
  });
  while (rounds < 20 && !failed) std::this_thread::yield();

  std::vector<std::string> copies;
  for (int i = 0; i < 3; ++i) {
    copies.push_back(dir.file("copy" + std::to_string(i) + ".db"));
    Status status = store->backup_to(copies.back());
    if (!status.ok()) {
      stop = true;
      writer.join();
      FAIL(status.error().to_string());
    }
  }
  const int rounds_at_end = rounds;
  stop = true;
  writer.join();
  REQUIRE_FALSE(failed);

  std::int64_t last_seen = 0;
  for (const std::string& path : copies) {
    INFO(path);
    auto copy = open_store(path);
    std::vector<AuditRecordRow> rows = all_audit(*copy);
    check_chain(rows);
    REQUIRE(rows.size() >= static_cast<std::size_t>(prefilled));
    const std::int64_t audited_rounds = (static_cast<std::int64_t>(rows.size()) - prefilled) / 3;
    CHECK((static_cast<std::int64_t>(rows.size()) - prefilled) % 3 == 0);  // no half batch
    auto clients = value_of(copy->list_clients());
    const auto created = static_cast<std::int64_t>(clients.size());
    CHECK((created == audited_rounds || created == audited_rounds + 1));
    for (std::int64_t i = 1; i <= created; ++i) {
      CHECK(value_of(copy->find_client("c" + std::to_string(i))).has_value());
    }
    // Copies taken later hold at least as much, and the writer made progress meanwhile.
    CHECK(created >= last_seen);
    last_seen = created;
  }
  CHECK(last_seen <= rounds_at_end);
}

}  // namespace kekd::store
