// SqliteStore: the MetadataStore on one SQLite connection per process.
//
// Durability: WAL with synchronous=FULL syncs the log on every commit, so an ok Status survives a
// crash or a power cut. Several processes: every write transaction is BEGIN IMMEDIATE, taking the
// write lock up front and waiting for it through the busy timeout. A DEFERRED transaction that
// read first would get SQLITE_BUSY on upgrading to a writer, without the busy handler waiting.
#include "kekd/store/sqlite_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sqlite_util.h"

namespace kekd::store {

using sqlite::exec;
using sqlite::sqlite_error;
using sqlite::Statement;
using sqlite::Transaction;

namespace {

// Migration i brings a file from schema version i to i + 1, each in its own transaction. Append
// only: files in the field already carry every shipped entry, so those are never edited.
constexpr const char* kMigrations[] = {
    // 1: keys and their versions.
    R"sql(
CREATE TABLE keys (
  name TEXT NOT NULL PRIMARY KEY,  -- NOT NULL: SQLite's rowid tables allow NULL keys otherwise
  id TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL
);
CREATE TABLE key_versions (
  key_name TEXT NOT NULL REFERENCES keys(name),
  version INTEGER NOT NULL CHECK (version >= 1),
  state TEXT NOT NULL
    CHECK (state IN ('enabled', 'disabled', 'destroy_scheduled', 'destroyed')),
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  ceremony_id TEXT NOT NULL DEFAULT '',
  destroy_after INTEGER,
  PRIMARY KEY (key_name, version),
  CHECK ((state = 'destroy_scheduled') = (destroy_after IS NOT NULL))
);
)sql",
    // 2: the quorum (operator sets with their history, ceremonies, approvals) and API clients.
    R"sql(
CREATE TABLE operator_sets (
  hash TEXT NOT NULL PRIMARY KEY,  -- sha256:<hex> of canonical
  canonical TEXT NOT NULL,
  threshold INTEGER NOT NULL CHECK (threshold >= 1)
);
-- Every installation of a set, in order: the last row is the set in force.
CREATE TABLE operator_set_history (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: never reused, so the order is history
  hash TEXT NOT NULL REFERENCES operator_sets(hash),
  installed_at INTEGER NOT NULL,
  ceremony_id TEXT NOT NULL DEFAULT ''  -- '' for the genesis set of kekd init
);
CREATE TABLE ceremonies (
  id TEXT NOT NULL PRIMARY KEY,
  action TEXT NOT NULL,
  key TEXT NOT NULL,  -- '' for set-operators
  state TEXT NOT NULL
    CHECK (state IN ('open', 'executing', 'executed', 'cancelled', 'expired', 'failed')),
  operator_set_hash TEXT NOT NULL REFERENCES operator_sets(hash),
  threshold INTEGER NOT NULL CHECK (threshold >= 1),
  statement TEXT NOT NULL,
  proposed_by TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  finished_at INTEGER,
  result TEXT,
  CHECK ((state IN ('open', 'executing')) = (finished_at IS NULL)),
  CHECK ((finished_at IS NULL) = (result IS NULL))
);
-- One ceremony per key in flight (DESIGN §5), and so one set-operators ceremony (key '').
CREATE UNIQUE INDEX ceremonies_one_in_flight_per_key ON ceremonies(key)
  WHERE state IN ('open', 'executing');
CREATE INDEX ceremonies_by_state ON ceremonies(state, created_at);
CREATE TABLE approvals (
  ceremony_id TEXT NOT NULL REFERENCES ceremonies(id),
  operator TEXT NOT NULL,
  seq INTEGER NOT NULL CHECK (seq >= 1),  -- the order in which approvals were accepted
  signature BLOB NOT NULL,
  approved_at INTEGER NOT NULL,
  PRIMARY KEY (ceremony_id, operator),  -- one approval per operator
  UNIQUE (ceremony_id, seq)
);
CREATE TABLE clients (
  id TEXT NOT NULL PRIMARY KEY,
  wrapped_secret BLOB NOT NULL,
  admin INTEGER NOT NULL CHECK (admin IN (0, 1)),
  grants_json TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  deleted_at INTEGER  -- kept, so an id is never handed out twice
);
)sql",
    // 3: the audit log (docs/audit.md): the hash chain of records and its signed checkpoints.
    R"sql(
CREATE TABLE audit_records (
  seq INTEGER PRIMARY KEY CHECK (seq >= 1),  -- 1, 2, 3, ...: append_audit allows no gap
  record TEXT NOT NULL,  -- the canonical JSON, exactly the bytes that were hashed
  hash TEXT NOT NULL     -- lowercase hex SHA-256 of record
);
CREATE TABLE audit_checkpoints (
  seq INTEGER PRIMARY KEY REFERENCES audit_records(seq),  -- the record it covers
  checkpoint TEXT NOT NULL  -- its JSON, signature included
);
)sql",
};

constexpr int kBusyTimeoutMs = 5000;

Result<std::int64_t> user_version(sqlite3* db) {
  KEKD_ASSIGN_OR_RETURN(Statement stmt,
                        Statement::prepare(db, "read schema version", "PRAGMA user_version"));
  KEKD_ASSIGN_OR_RETURN(bool row, stmt.step());
  if (!row) {
    return Error(Code::kInternal, "store: PRAGMA user_version returned no row");
  }
  return stmt.integer(0);
}

// Switching a fresh file to WAL takes an exclusive lock. When another process is opening the same
// file, SQLite may answer SQLITE_BUSY at once instead of calling the busy handler (it would risk
// a deadlock), so this waits out such collisions itself, within the same time budget.
Status enable_wal(sqlite3* db) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kBusyTimeoutMs);
  for (;;) {
    KEKD_ASSIGN_OR_RETURN(Statement wal,
                          Statement::prepare(db, "enable WAL", "PRAGMA journal_mode = WAL"));
    Result<bool> row = wal.step();
    if (row.ok()) {
      // The pragma answers with the mode in effect, which stays the old one if the switch fails.
      if (!*row || wal.text(0) != "wal") {
        return Error(Code::kInternal, "store: could not switch the journal to WAL");
      }
      return ok_status();
    }
    bool busy = (sqlite3_extended_errcode(db) & 0xff) == SQLITE_BUSY;
    if (!busy || std::chrono::steady_clock::now() >= deadline) {
      return row.error();
    }
    sqlite3_sleep(10);
  }
}

Status configure(sqlite3* db) {
  int rc = sqlite3_extended_result_codes(db, 1);
  if (rc == SQLITE_OK) {
    rc = sqlite3_busy_timeout(db, kBusyTimeoutMs);  // before anything that takes a lock
  }
  if (rc != SQLITE_OK) {
    return sqlite_error(db, rc, "configure connection");
  }
  KEKD_RETURN_IF_ERROR(exec(db, "enable foreign keys", "PRAGMA foreign_keys = ON"));
  KEKD_RETURN_IF_ERROR(exec(db, "set synchronous", "PRAGMA synchronous = FULL"));
  return enable_wal(db);
}

// Applies the migration from schema version `from`, unless another process got there first.
Status apply_migration(sqlite3* db, std::int64_t from) {
  KEKD_ASSIGN_OR_RETURN(Transaction tx, Transaction::begin(db));
  KEKD_ASSIGN_OR_RETURN(std::int64_t version, user_version(db));
  if (version != from) {
    return ok_status();  // the caller reads the version again and decides afresh
  }
  KEKD_RETURN_IF_ERROR(exec(db, "migrate schema", kMigrations[from]));
  // PRAGMA takes no bound parameters; this is our own integer, not user data.
  std::string set_version = "PRAGMA user_version = " + std::to_string(from + 1);
  KEKD_RETURN_IF_ERROR(exec(db, "migrate schema", set_version.c_str()));
  return tx.commit();
}

Status migrate(sqlite3* db, const std::string& path) {
  const std::int64_t current = SqliteStore::current_schema_version();
  for (;;) {
    KEKD_ASSIGN_OR_RETURN(std::int64_t version, user_version(db));
    if (version == current) {
      return ok_status();
    }
    if (version < 0 || version > current) {
      return Error(Code::kFailedPrecondition,
                   "store: " + path + " has schema version " + std::to_string(version) +
                       ", but this kekd knows versions up to " + std::to_string(current) +
                       "; it was written by a newer kekd, which is needed to open it");
    }
    KEKD_RETURN_IF_ERROR(apply_migration(db, version));
  }
}

// destroy_after is the deadline of a scheduled destruction and means nothing in other states.
Status check_destroy_after(KeyState state, const std::optional<UnixMillis>& destroy_after) {
  bool scheduled = state == KeyState::kDestroyScheduled;
  if (scheduled && !destroy_after) {
    return Error(Code::kInvalidArgument, "store: destroy_scheduled needs destroy_after");
  }
  if (!scheduled && destroy_after) {
    return Error(Code::kInvalidArgument,
                 "store: destroy_after is only allowed with state destroy_scheduled");
  }
  return ok_status();
}

Status insert_version(sqlite3* db, std::string_view name, const KeyVersionRecord& v) {
  KEKD_ASSIGN_OR_RETURN(Statement insert, Statement::prepare(db, "insert key version", R"sql(
INSERT INTO key_versions
  (key_name, version, state, created_at, updated_at, ceremony_id, destroy_after)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
)sql"));
  KEKD_RETURN_IF_ERROR(insert.bind(name, std::int64_t{v.version}, state_name(v.state), v.created_at,
                                   v.updated_at, v.ceremony_id, v.destroy_after));
  return insert.run();
}

// The highest version of a key; std::nullopt if there is no such key.
Result<std::optional<std::int64_t>> latest_version(sqlite3* db, std::string_view name) {
  KEKD_ASSIGN_OR_RETURN(Statement select, Statement::prepare(db, "read latest version", R"sql(
SELECT (SELECT max(version) FROM key_versions WHERE key_name = k.name) FROM keys AS k
WHERE k.name = ?1
)sql"));
  KEKD_RETURN_IF_ERROR(select.bind(name));
  KEKD_ASSIGN_OR_RETURN(bool found, select.step());
  if (!found) {
    return std::optional<std::int64_t>();
  }
  // A key always has a version; 0 keeps a damaged file from blocking version 1.
  return std::optional<std::int64_t>(select.is_null(0) ? 0 : select.integer(0));
}

// One SELECT, so the keys and versions read are a single consistent snapshot.
constexpr std::string_view kSelectKeys = R"sql(
SELECT k.name, k.id, k.created_at, v.version, v.state, v.created_at, v.updated_at,
       v.ceremony_id, v.destroy_after
FROM keys AS k JOIN key_versions AS v ON v.key_name = k.name
)sql";

Result<KeyVersionRecord> read_version(Statement& row) {
  KeyVersionRecord v;
  std::int64_t number = row.integer(3);
  std::optional<KeyState> state = parse_state(row.text(4));
  if (number < 1 || number > std::numeric_limits<std::uint32_t>::max() || !state) {
    return Error(Code::kInternal, "store: damaged key_versions row");
  }
  v.version = static_cast<std::uint32_t>(number);
  v.state = *state;
  v.created_at = row.integer(5);
  v.updated_at = row.integer(6);
  v.ceremony_id = row.text(7);
  if (!row.is_null(8)) {
    v.destroy_after = row.integer(8);
  }
  return v;
}

// Groups the rows of a kSelectKeys query ordered by name, version.
Result<std::vector<KeyRecord>> read_keys(Statement& select) {
  std::vector<KeyRecord> keys;
  for (;;) {
    KEKD_ASSIGN_OR_RETURN(bool row, select.step());
    if (!row) {
      return keys;
    }
    std::string name = select.text(0);
    if (keys.empty() || keys.back().name != name) {
      KeyRecord& key = keys.emplace_back();
      key.name = std::move(name);
      key.id = select.text(1);
      key.created_at = select.integer(2);
    }
    KEKD_ASSIGN_OR_RETURN(KeyVersionRecord version, read_version(select));
    keys.back().versions.push_back(std::move(version));
  }
}

}  // namespace

Result<std::unique_ptr<SqliteStore>> SqliteStore::open(const std::string& path) {
  // A new store is created 0600 whatever the umask: it holds the client records, grants and the
  // audit log. SQLite gives its -wal and -shm files the database file's permissions.
  if (int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600); fd >= 0) {
    ::close(fd);
  } else if (errno != EEXIST) {
    return Error(Code::kUnavailable,
                 "cannot create the store " + path + ": " + std::strerror(errno));
  }
  sqlite3* db = nullptr;
  // mu_ serialises every use of the connection, so SQLite's own connection mutex is redundant.
  int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  // Owned from here on: sqlite3_open_v2 returns a handle to close even when it fails.
  std::unique_ptr<SqliteStore> store(new SqliteStore(db));
  if (rc != SQLITE_OK) {
    return sqlite_error(db, rc, "open " + path);
  }
  KEKD_RETURN_IF_ERROR(configure(db));
  KEKD_RETURN_IF_ERROR(migrate(db, path));
  return store;
}

Result<std::unique_ptr<SqliteStore>> SqliteStore::open_read_only(const std::string& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
  std::unique_ptr<SqliteStore> store(new SqliteStore(db));
  if (rc != SQLITE_OK) {
    return sqlite_error(db, rc, "open " + path + " for reading");
  }
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
  KEKD_ASSIGN_OR_RETURN(std::int64_t version, user_version(db));
  if (version != current_schema_version()) {
    return Error(Code::kFailedPrecondition,
                 "store: " + path + " has schema version " + std::to_string(version) +
                     "; this build reads version " + std::to_string(current_schema_version()));
  }
  return store;
}

int SqliteStore::current_schema_version() { return static_cast<int>(std::size(kMigrations)); }

SqliteStore::SqliteStore(sqlite3* db)
    : db_(db), statements_(std::make_unique<sqlite::StatementCache>()) {}

// The cached statements are finalized first; every other statement and transaction is owned by a
// scope that has ended, so nothing keeps the connection busy; close_v2 would defer the close
// rather than leak if something did.
SqliteStore::~SqliteStore() {
  statements_.reset();
  sqlite3_close_v2(db_);
}

Result<std::vector<KeyRecord>> SqliteStore::list_keys() {
  std::lock_guard lock(mu_);
  KEKD_ASSIGN_OR_RETURN(Statement select, Statement::prepare(db_, "list keys",
                                                             std::string(kSelectKeys) +
                                                                 "ORDER BY k.name, v.version"));
  return read_keys(select);
}

Result<std::optional<KeyRecord>> SqliteStore::find_key(std::string_view name) {
  std::lock_guard lock(mu_);
  KEKD_ASSIGN_OR_RETURN(
      Statement select,
      Statement::prepare(db_, "find key",
                         std::string(kSelectKeys) + "WHERE k.name = ?1 ORDER BY v.version"));
  KEKD_RETURN_IF_ERROR(select.bind(name));
  KEKD_ASSIGN_OR_RETURN(std::vector<KeyRecord> keys, read_keys(select));
  if (keys.empty()) {
    return std::optional<KeyRecord>();
  }
  return std::optional<KeyRecord>(std::move(keys.front()));
}

Status SqliteStore::create_key(const KeyRecord& key) {
  if (key.versions.empty()) {
    return Error(Code::kInvalidArgument, "store: a new key needs at least one version");
  }
  for (std::size_t i = 0; i < key.versions.size(); ++i) {
    // The same rule add_version enforces one version at a time.
    if (key.versions[i].version != i + 1) {
      return Error(Code::kInvalidArgument, "store: versions of a new key must be 1, 2, 3, ...");
    }
    KEKD_RETURN_IF_ERROR(check_destroy_after(key.versions[i].state, key.versions[i].destroy_after));
  }
  std::lock_guard lock(mu_);
  KEKD_ASSIGN_OR_RETURN(Transaction tx, Transaction::begin(db_));
  KEKD_ASSIGN_OR_RETURN(
      Statement insert,
      Statement::prepare(db_, "create key",
                         "INSERT INTO keys (name, id, created_at) VALUES (?1, ?2, ?3)"));
  KEKD_RETURN_IF_ERROR(insert.bind(key.name, key.id, key.created_at));
  KEKD_RETURN_IF_ERROR(insert.run());
  for (const KeyVersionRecord& version : key.versions) {
    KEKD_RETURN_IF_ERROR(insert_version(db_, key.name, version));
  }
  return tx.commit();
}

Status SqliteStore::add_version(std::string_view name, const KeyVersionRecord& version) {
  KEKD_RETURN_IF_ERROR(check_destroy_after(version.state, version.destroy_after));
  std::lock_guard lock(mu_);
  // The write lock is held from the read of the latest version to the insert, so two writers
  // (threads or processes) can never both add the same next version.
  KEKD_ASSIGN_OR_RETURN(Transaction tx, Transaction::begin(db_));
  KEKD_ASSIGN_OR_RETURN(std::optional<std::int64_t> latest, latest_version(db_, name));
  if (!latest) {
    return Error(Code::kNotFound, "store: no key named '" + std::string(name) + "'");
  }
  if (version.version != *latest + 1) {
    return Error(Code::kFailedPrecondition,
                 "store: key '" + std::string(name) + "' can only get version " +
                     std::to_string(*latest + 1) + ", not " + std::to_string(version.version));
  }
  KEKD_RETURN_IF_ERROR(insert_version(db_, name, version));
  return tx.commit();
}

Status SqliteStore::set_version_state(std::string_view name, std::uint32_t version, KeyState state,
                                      std::optional<UnixMillis> destroy_after,
                                      UnixMillis updated_at) {
  KEKD_RETURN_IF_ERROR(check_destroy_after(state, destroy_after));
  std::lock_guard lock(mu_);
  // A single statement is atomic and durable on its own: no explicit transaction needed.
  KEKD_ASSIGN_OR_RETURN(Statement update, Statement::prepare(db_, "set version state", R"sql(
UPDATE key_versions SET state = ?1, destroy_after = ?2, updated_at = ?3
WHERE key_name = ?4 AND version = ?5
)sql"));
  KEKD_RETURN_IF_ERROR(
      update.bind(state_name(state), destroy_after, updated_at, name, std::int64_t{version}));
  KEKD_RETURN_IF_ERROR(update.run());
  if (sqlite3_changes(db_) == 0) {
    return Error(Code::kNotFound, "store: key '" + std::string(name) + "' has no version " +
                                      std::to_string(version));
  }
  return ok_status();
}

Result<int> SqliteStore::schema_version() {
  std::lock_guard lock(mu_);
  KEKD_ASSIGN_OR_RETURN(std::int64_t version, user_version(db_));
  return static_cast<int>(version);
}

// ---------------------------------------------------------------------------------------------
// CeremonyStore: operator sets, ceremonies, approvals (schema migration 2).

namespace {

Error invalid_record(std::string_view what) {
  return Error(Code::kInvalidArgument, "store: " + std::string(what));
}

bool has_line_break(std::string_view s) {
  return s.find_first_of("\r\n") != std::string_view::npos;
}

Status check_set_record(const OperatorSetRecord& set) {
  if (set.hash.size() != 71 || !set.hash.starts_with("sha256:")) {
    return invalid_record("an operator-set hash is sha256:<64 hex digits>");
  }
  if (set.canonical.empty() || set.canonical.size() > kMaxStoredSetBytes) {
    return invalid_record("operator set text is empty or too long");
  }
  if (set.threshold < 1) {
    return invalid_record("an operator set needs a threshold of at least 1");
  }
  return ok_status();
}

Status check_result(std::string_view result) {
  if (result.empty() || result.size() > kMaxStoredResultBytes || has_line_break(result)) {
    return invalid_record("a ceremony result is one non-empty line of at most 1024 bytes");
  }
  return ok_status();
}

Status check_new_ceremony(const CeremonyRecord& c) {
  if (c.id.empty() || c.id.size() > 64 || c.action.empty() || c.action.size() > 64 ||
      c.key.size() > 64 || c.proposed_by.empty() || c.proposed_by.size() > 128) {
    return invalid_record("ceremony id, action, key or proposer out of bounds");
  }
  if (c.statement.empty() || c.statement.size() > kMaxStoredStatementBytes) {
    return invalid_record("a statement is 1 to 65536 bytes");
  }
  if (c.threshold < 1 || c.expires_at <= c.created_at) {
    return invalid_record(
        "a ceremony needs a threshold of at least 1 and an expiry after creation");
  }
  if (c.state != CeremonyState::kOpen || !c.approvals.empty() || c.finished_at || c.result) {
    return invalid_record("a new ceremony is open, without approvals or result");
  }
  return ok_status();
}

Error unknown_ceremony(std::string_view id) {
  return Error(Code::kNotFound, "ceremony '" + std::string(id) + "' not found");
}

Error not_in_state(std::string_view id, CeremonyState state) {
  return Error(Code::kFailedPrecondition,
               "ceremony " + std::string(id) + " is " + std::string(ceremony_state_name(state)));
}

// The hash of the set in force; std::nullopt before kekd init.
Result<std::optional<std::string>> current_set_hash(sqlite3* db) {
  KEKD_ASSIGN_OR_RETURN(
      Statement select,
      Statement::prepare(db, "read current operator set",
                         "SELECT hash FROM operator_set_history ORDER BY seq DESC LIMIT 1"));
  KEKD_ASSIGN_OR_RETURN(bool found, select.step());
  return found ? std::optional<std::string>(select.text(0)) : std::nullopt;
}

Result<std::optional<OperatorSetRecord>> select_set(sqlite3* db, std::string_view hash) {
  KEKD_ASSIGN_OR_RETURN(
      Statement select,
      Statement::prepare(db, "read operator set",
                         "SELECT hash, canonical, threshold FROM operator_sets WHERE hash = ?1"));
  KEKD_RETURN_IF_ERROR(select.bind(hash));
  KEKD_ASSIGN_OR_RETURN(bool found, select.step());
  if (!found) {
    return std::optional<OperatorSetRecord>();
  }
  std::int64_t threshold = select.integer(2);
  if (threshold < 1 || threshold > std::numeric_limits<std::uint32_t>::max()) {
    return Error(Code::kInternal, "store: damaged operator_sets row");
  }
  return std::optional<OperatorSetRecord>(
      OperatorSetRecord{select.text(0), select.text(1), static_cast<std::uint32_t>(threshold)});
}

// Keeps a set (content-addressed: a set installed twice is stored once) and installs it.
Status install_set(sqlite3* db, const OperatorSetRecord& set, UnixMillis at,
                   std::string_view ceremony_id) {
  KEKD_ASSIGN_OR_RETURN(std::optional<OperatorSetRecord> existing, select_set(db, set.hash));
  if (existing && *existing != set) {
    return Error(Code::kInternal,
                 "store: operator set " + set.hash + " is already stored with different content");
  }
  if (!existing) {
    KEKD_ASSIGN_OR_RETURN(
        Statement insert,
        Statement::prepare(db, "store operator set",
                           "INSERT INTO operator_sets (hash, canonical, threshold) "
                           "VALUES (?1, ?2, ?3)"));
    KEKD_RETURN_IF_ERROR(insert.bind(set.hash, set.canonical, std::int64_t{set.threshold}));
    KEKD_RETURN_IF_ERROR(insert.run());
  }
  KEKD_ASSIGN_OR_RETURN(
      Statement history,
      Statement::prepare(db, "install operator set",
                         "INSERT INTO operator_set_history (hash, installed_at, ceremony_id) "
                         "VALUES (?1, ?2, ?3)"));
  KEKD_RETURN_IF_ERROR(history.bind(set.hash, at, ceremony_id));
  return history.run();
}

// Ceremonies with their approvals in one SELECT, so each read is one consistent snapshot. Rows
// come ordered by ceremony, then approval order; a ceremony without approvals has one row with
// NULL approval columns.
constexpr std::string_view kSelectCeremonies = R"sql(
SELECT c.id, c.action, c.key, c.state, c.operator_set_hash, c.threshold, c.statement,
       c.proposed_by, c.created_at, c.expires_at, c.finished_at, c.result,
       a.operator, a.signature, a.approved_at
FROM ceremonies AS c LEFT JOIN approvals AS a ON a.ceremony_id = c.id
)sql";
constexpr std::string_view kCeremonyOrder = " ORDER BY c.created_at, c.id, a.seq";

Result<std::vector<CeremonyRecord>> read_ceremonies(Statement& select) {
  std::vector<CeremonyRecord> out;
  for (;;) {
    KEKD_ASSIGN_OR_RETURN(bool row, select.step());
    if (!row) {
      return out;
    }
    std::string id = select.text(0);
    if (out.empty() || out.back().id != id) {
      CeremonyRecord& c = out.emplace_back();
      c.id = std::move(id);
      c.action = select.text(1);
      c.key = select.text(2);
      std::optional<CeremonyState> state = parse_ceremony_state(select.text(3));
      std::int64_t threshold = select.integer(5);
      if (!state || threshold < 1 || threshold > std::numeric_limits<std::uint32_t>::max()) {
        return Error(Code::kInternal, "store: damaged ceremonies row");
      }
      c.state = *state;
      c.operator_set_hash = select.text(4);
      c.threshold = static_cast<std::uint32_t>(threshold);
      c.statement = select.text(6);
      c.proposed_by = select.text(7);
      c.created_at = select.integer(8);
      c.expires_at = select.integer(9);
      if (!select.is_null(10)) {
        c.finished_at = select.integer(10);
      }
      if (!select.is_null(11)) {
        c.result = select.text(11);
      }
    }
    if (!select.is_null(12)) {
      out.back().approvals.push_back(
          ApprovalRecord{select.text(12), select.blob(13), select.integer(14)});
    }
  }
}

Result<std::optional<CeremonyRecord>> select_ceremony(sqlite3* db, std::string_view id) {
  KEKD_ASSIGN_OR_RETURN(Statement select,
                        Statement::prepare(db, "find ceremony",
                                           std::string(kSelectCeremonies) + "WHERE c.id = ?1" +
                                               std::string(kCeremonyOrder)));
  KEKD_RETURN_IF_ERROR(select.bind(id));
  KEKD_ASSIGN_OR_RETURN(std::vector<CeremonyRecord> found, read_ceremonies(select));
  if (found.empty()) {
    return std::optional<CeremonyRecord>();
  }
  return std::optional<CeremonyRecord>(std::move(found.front()));
}

// The state of a ceremony; kNotFound if there is none.
Result<CeremonyState> ceremony_state(sqlite3* db, std::string_view id) {
  KEKD_ASSIGN_OR_RETURN(
      Statement select,
      Statement::prepare(db, "read ceremony state", "SELECT state FROM ceremonies WHERE id = ?1"));
  KEKD_RETURN_IF_ERROR(select.bind(id));
  KEKD_ASSIGN_OR_RETURN(bool found, select.step());
  if (!found) {
    return unknown_ceremony(id);
  }
  std::optional<CeremonyState> state = parse_ceremony_state(select.text(0));
  if (!state) {
    return Error(Code::kInternal, "store: damaged ceremonies row");
  }
  return *state;
}

Status set_finished(sqlite3* db, std::string_view id, CeremonyState to, UnixMillis at,
                    std::string_view result) {
  KEKD_ASSIGN_OR_RETURN(Statement update, Statement::prepare(db, "finish ceremony", R"sql(
UPDATE ceremonies SET state = ?1, finished_at = ?2, result = ?3 WHERE id = ?4
)sql"));
  KEKD_RETURN_IF_ERROR(update.bind(ceremony_state_name(to), at, result, id));
  return update.run();
}

bool allowed_finish(CeremonyState from, CeremonyState to) {
  return (from == CeremonyState::kOpen &&
          (to == CeremonyState::kCancelled || to == CeremonyState::kExpired)) ||
         (from == CeremonyState::kExecuting &&
          (to == CeremonyState::kExecuted || to == CeremonyState::kFailed));
}

}  // namespace

Result<std::optional<OperatorSetRecord>> SqliteStore::current_operator_set() {
  std::lock_guard lock(mu_);
  KEKD_ASSIGN_OR_RETURN(std::optional<std::string> hash, current_set_hash(db_));
  if (!hash) {
    return std::optional<OperatorSetRecord>();
  }
  // Both reads run under mu_ and every writer of this connection takes mu_; another process
  // can only append to the history, never remove the set a history row names.
  KEKD_ASSIGN_OR_RETURN(std::optional<OperatorSetRecord> set, select_set(db_, *hash));
  if (!set) {
    return Error(Code::kInternal, "store: the operator set in force is missing");
  }
  return set;
}

Result<std::optional<OperatorSetRecord>> SqliteStore::find_operator_set(std::string_view hash) {
  std::lock_guard lock(mu_);
  return select_set(db_, hash);
}

Result<std::vector<OperatorSetChange>> SqliteStore::operator_set_history() {
  std::lock_guard lock(mu_);
  KEKD_ASSIGN_OR_RETURN(
      Statement select,
      Statement::prepare(db_, "read operator set history",
                         "SELECT seq, hash, installed_at, ceremony_id FROM operator_set_history "
                         "ORDER BY seq"));
  std::vector<OperatorSetChange> out;
  for (;;) {
    KEKD_ASSIGN_OR_RETURN(bool row, select.step());
    if (!row) {
      return out;
    }
    out.push_back(
        OperatorSetChange{select.integer(0), select.text(1), select.integer(2), select.text(3)});
  }
}

Status SqliteStore::init_operator_set(const OperatorSetRecord& set, UnixMillis at) {
  KEKD_RETURN_IF_ERROR(check_set_record(set));
  std::lock_guard lock(mu_);
  KEKD_ASSIGN_OR_RETURN(Transaction tx, Transaction::begin(db_));
  KEKD_ASSIGN_OR_RETURN(std::optional<std::string> current, current_set_hash(db_));
  if (current) {
    return Error(Code::kFailedPrecondition,
                 "store: an operator set is installed already; changing it takes a "
                 "set-operators ceremony");
  }
  KEKD_RETURN_IF_ERROR(install_set(db_, set, at, ""));
  return tx.commit();
}

Status SqliteStore::create_ceremony(const CeremonyRecord& c) {
  KEKD_RETURN_IF_ERROR(check_new_ceremony(c));
  std::lock_guard lock(mu_);
  KEKD_ASSIGN_OR_RETURN(Transaction tx, Transaction::begin(db_));
  KEKD_ASSIGN_OR_RETURN(std::optional<std::string> current, current_set_hash(db_));
  if (!current) {
    return Error(Code::kFailedPrecondition, "no operator set is installed; run kekd init first");
  }
  if (*current != c.operator_set_hash) {
    return Error(Code::kFailedPrecondition,
                 "the operator set changed while the ceremony was proposed; propose it again");
  }
  KEKD_ASSIGN_OR_RETURN(Statement busy, Statement::prepare(db_, "find ceremony in flight", R"sql(
SELECT id FROM ceremonies WHERE key = ?1 AND state IN ('open', 'executing')
)sql"));
  KEKD_RETURN_IF_ERROR(busy.bind(c.key));
  KEKD_ASSIGN_OR_RETURN(bool in_flight, busy.step());
  if (in_flight) {
    std::string what = c.key.empty() ? std::string("a set-operators ceremony")
                                     : "a ceremony for key '" + c.key + "'";
    return Error(Code::kFailedPrecondition,
                 what + " is already open: " + busy.text(0) + "; finish or cancel it first");
  }
  KEKD_ASSIGN_OR_RETURN(Statement insert, Statement::prepare(db_, "create ceremony", R"sql(
INSERT INTO ceremonies (id, action, key, state, operator_set_hash, threshold, statement,
                        proposed_by, created_at, expires_at)
VALUES (?1, ?2, ?3, 'open', ?4, ?5, ?6, ?7, ?8, ?9)
)sql"));
  KEKD_RETURN_IF_ERROR(insert.bind(c.id, c.action, c.key, c.operator_set_hash,
                                   std::int64_t{c.threshold}, c.statement, c.proposed_by,
                                   c.created_at, c.expires_at));
  KEKD_RETURN_IF_ERROR(insert.run());
  return tx.commit();
}

Result<std::optional<CeremonyRecord>> SqliteStore::find_ceremony(std::string_view id) {
  std::lock_guard lock(mu_);
  return select_ceremony(db_, id);
}

Result<std::vector<CeremonyRecord>> SqliteStore::list_ceremonies(
    std::optional<CeremonyState> state) {
  std::lock_guard lock(mu_);
  std::string sql(kSelectCeremonies);
  if (state) {
    sql += "WHERE c.state = ?1";
  }
  sql += kCeremonyOrder;
  KEKD_ASSIGN_OR_RETURN(Statement select, Statement::prepare(db_, "list ceremonies", sql));
  if (state) {
    KEKD_RETURN_IF_ERROR(select.bind(ceremony_state_name(*state)));
  }
  return read_ceremonies(select);
}

Result<CeremonyRecord> SqliteStore::add_approval(std::string_view id,
                                                 const ApprovalRecord& approval) {
  if (approval.operator_name.empty() || approval.operator_name.size() > 64 ||
      approval.signature.empty() || approval.signature.size() > kMaxStoredSignatureBytes) {
    return invalid_record("approval operator or signature out of bounds");
  }
  std::lock_guard lock(mu_);
  // The write lock is held from the checks to the state change: two approvals racing (threads
  // or replicas) are counted one after the other, and only one of them reaches the threshold.
  KEKD_ASSIGN_OR_RETURN(Transaction tx, Transaction::begin(db_));
  KEKD_ASSIGN_OR_RETURN(std::optional<CeremonyRecord> found, select_ceremony(db_, id));
  if (!found) {
    return unknown_ceremony(id);
  }
  const CeremonyRecord& c = *found;
  if (c.state != CeremonyState::kOpen) {
    return not_in_state(id, c.state);
  }
  if (approval.at >= c.expires_at) {
    return Error(Code::kFailedPrecondition, "ceremony " + std::string(id) + " has expired");
  }
  for (const ApprovalRecord& a : c.approvals) {
    if (a.operator_name == approval.operator_name) {
      return Error(Code::kDuplicateApproval, "operator '" + approval.operator_name +
                                                 "' has already approved ceremony " +
                                                 std::string(id));
    }
  }
  const std::int64_t seq = static_cast<std::int64_t>(c.approvals.size()) + 1;
  KEKD_ASSIGN_OR_RETURN(Statement insert, Statement::prepare(db_, "record approval", R"sql(
INSERT INTO approvals (ceremony_id, operator, seq, signature, approved_at)
VALUES (?1, ?2, ?3, ?4, ?5)
)sql"));
  KEKD_RETURN_IF_ERROR(
      insert.bind(id, approval.operator_name, seq, ByteView(approval.signature), approval.at));
  KEKD_RETURN_IF_ERROR(insert.run());
  if (seq >= std::int64_t{c.threshold}) {
    KEKD_ASSIGN_OR_RETURN(
        Statement update,
        Statement::prepare(db_, "start execution",
                           "UPDATE ceremonies SET state = 'executing' WHERE id = ?1"));
    KEKD_RETURN_IF_ERROR(update.bind(id));
    KEKD_RETURN_IF_ERROR(update.run());
  }
  KEKD_ASSIGN_OR_RETURN(std::optional<CeremonyRecord> updated, select_ceremony(db_, id));
  KEKD_RETURN_IF_ERROR(tx.commit());
  return std::move(*updated);
}

Status SqliteStore::finish_ceremony(std::string_view id, CeremonyState from, CeremonyState to,
                                    UnixMillis at, std::string_view result) {
  if (!allowed_finish(from, to)) {
    return invalid_record("a ceremony cannot go from " + std::string(ceremony_state_name(from)) +
                          " to " + std::string(ceremony_state_name(to)));
  }
  KEKD_RETURN_IF_ERROR(check_result(result));
  std::lock_guard lock(mu_);
  KEKD_ASSIGN_OR_RETURN(Transaction tx, Transaction::begin(db_));
  KEKD_ASSIGN_OR_RETURN(CeremonyState state, ceremony_state(db_, id));
  if (state != from) {
    return not_in_state(id, state);
  }
  KEKD_RETURN_IF_ERROR(set_finished(db_, id, to, at, result));
  return tx.commit();
}

Status SqliteStore::change_operator_set(std::string_view id, const OperatorSetRecord& new_set,
                                        UnixMillis at, std::string_view result,
                                        std::string_view cancel_result) {
  KEKD_RETURN_IF_ERROR(check_set_record(new_set));
  KEKD_RETURN_IF_ERROR(check_result(result));
  KEKD_RETURN_IF_ERROR(check_result(cancel_result));
  std::lock_guard lock(mu_);
  KEKD_ASSIGN_OR_RETURN(Transaction tx, Transaction::begin(db_));
  KEKD_ASSIGN_OR_RETURN(CeremonyState state, ceremony_state(db_, id));
  if (state != CeremonyState::kExecuting) {
    return not_in_state(id, state);
  }
  KEKD_RETURN_IF_ERROR(install_set(db_, new_set, at, id));
  KEKD_RETURN_IF_ERROR(set_finished(db_, id, CeremonyState::kExecuted, at, result));
  // Approvals already given were given to the old set; ceremonies that reached their threshold
  // (executing) stand and finish.
  KEKD_ASSIGN_OR_RETURN(Statement cancel, Statement::prepare(db_, "cancel open ceremonies", R"sql(
UPDATE ceremonies SET state = 'cancelled', finished_at = ?1, result = ?2
WHERE state = 'open' AND id != ?3
)sql"));
  KEKD_RETURN_IF_ERROR(cancel.bind(at, cancel_result, id));
  KEKD_RETURN_IF_ERROR(cancel.run());
  return tx.commit();
}

// ---------------------------------------------------------------------------------------------
// ClientStore (schema migration 2).

namespace {

bool is_client_id_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

Status check_client(const ClientRecord& client) {
  bool id_ok = !client.id.empty() && client.id.size() <= kMaxClientIdLength;
  for (std::size_t i = 0; id_ok && i < client.id.size(); ++i) {
    id_ok = is_client_id_char(client.id[i]);
  }
  if (!id_ok) {
    return invalid_record("a client id is 1 to 64 characters from A-Z, a-z, 0-9, '_' and '-'");
  }
  if (client.wrapped_secret.empty() || client.wrapped_secret.size() > kMaxWrappedSecretBytes) {
    return invalid_record("a wrapped client secret is 1 to 1024 bytes");
  }
  if (client.grants_json.empty() || client.grants_json.size() > kMaxGrantsJsonBytes) {
    return invalid_record("client grants are 1 to 65536 bytes of JSON");
  }
  if (client.deleted_at) {
    return invalid_record("a new client cannot be deleted already");
  }
  return ok_status();
}

constexpr std::string_view kSelectClients = R"sql(
SELECT id, wrapped_secret, admin, grants_json, created_at, deleted_at FROM clients
WHERE deleted_at IS NULL
)sql";

ClientRecord read_client(Statement& row) {
  ClientRecord c;
  c.id = row.text(0);
  c.wrapped_secret = row.blob(1);
  c.admin = row.integer(2) != 0;
  c.grants_json = row.text(3);
  c.created_at = row.integer(4);
  if (!row.is_null(5)) {
    c.deleted_at = row.integer(5);
  }
  return c;
}

}  // namespace

Status SqliteStore::create_client(const ClientRecord& client) {
  KEKD_RETURN_IF_ERROR(check_client(client));
  std::lock_guard lock(mu_);
  KEKD_ASSIGN_OR_RETURN(Statement insert, Statement::prepare(db_, "create client", R"sql(
INSERT INTO clients (id, wrapped_secret, admin, grants_json, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
)sql"));
  KEKD_RETURN_IF_ERROR(insert.bind(client.id, ByteView(client.wrapped_secret),
                                   std::int64_t{client.admin ? 1 : 0}, client.grants_json,
                                   client.created_at));
  Status inserted = insert.run();
  if (!inserted.ok() && inserted.error().code() == Code::kAlreadyExists) {
    return Error(Code::kAlreadyExists, "store: client id '" + client.id + "' is taken");
  }
  return inserted;
}

Result<std::optional<ClientRecord>> SqliteStore::find_client(std::string_view id) {
  std::lock_guard lock(mu_);
  KEKD_ASSIGN_OR_RETURN(
      Statement select,
      Statement::prepare(db_, "find client", std::string(kSelectClients) + "AND id = ?1"));
  KEKD_RETURN_IF_ERROR(select.bind(id));
  KEKD_ASSIGN_OR_RETURN(bool found, select.step());
  if (!found) {
    return std::optional<ClientRecord>();
  }
  return std::optional<ClientRecord>(read_client(select));
}

Result<std::vector<ClientRecord>> SqliteStore::list_clients() {
  std::lock_guard lock(mu_);
  KEKD_ASSIGN_OR_RETURN(Statement select, Statement::prepare(db_, "list clients",
                                                             std::string(kSelectClients) +
                                                                 "ORDER BY created_at, id"));
  std::vector<ClientRecord> out;
  for (;;) {
    KEKD_ASSIGN_OR_RETURN(bool row, select.step());
    if (!row) {
      return out;
    }
    out.push_back(read_client(select));
  }
}

Status SqliteStore::delete_client(std::string_view id, UnixMillis at) {
  std::lock_guard lock(mu_);
  KEKD_ASSIGN_OR_RETURN(
      Statement update,
      Statement::prepare(
          db_, "delete client",
          "UPDATE clients SET deleted_at = ?1 WHERE id = ?2 AND deleted_at IS NULL"));
  KEKD_RETURN_IF_ERROR(update.bind(at, id));
  KEKD_RETURN_IF_ERROR(update.run());
  if (sqlite3_changes(db_) == 0) {
    return Error(Code::kNotFound, "client '" + std::string(id) + "' not found");
  }
  return ok_status();
}

}  // namespace kekd::store
