// SqliteStore: the MetadataStore on one SQLite connection per process.
//
// Durability: WAL with synchronous=FULL syncs the log on every commit, so an ok Status survives a
// crash or a power cut. Several processes: every write transaction is BEGIN IMMEDIATE, taking the
// write lock up front and waiting for it through the busy timeout. A DEFERRED transaction that
// read first would get SQLITE_BUSY on upgrading to a writer, without the busy handler waiting.
#include "kekd/store/sqlite_store.h"

#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <iterator>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kekd::store {
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
};

constexpr int kBusyTimeoutMs = 5000;

// The one place SQLite result codes become kekd Codes. rc must be an extended code (enabled at
// open): only the extended code tells a taken name or id apart from other constraint failures.
Error sqlite_error(sqlite3* db, int rc, std::string_view what) {
  Code code = Code::kInternal;
  switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
      if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE) {
        code = Code::kAlreadyExists;
      }
      break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
      code = Code::kUnavailable;
      break;
    default:
      break;
  }
  // Without a handle (sqlite3_open_v2 out of memory) only the generic text for rc is known.
  std::string detail = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  return Error(code, "store: " + std::string(what) + ": " + detail);
}

struct StatementDeleter {
  // sqlite3_finalize only repeats the error of the last step, which was already checked.
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};

// A prepared statement, finalized on every path. `what` names the operation in error messages.
class Statement {
 public:
  static Result<Statement> prepare(sqlite3* db, std::string_view what, std::string_view sql) {
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &raw, nullptr);
    if (rc != SQLITE_OK) {
      return sqlite_error(db, rc, what);  // raw is null: nothing to finalize
    }
    return Statement(db, what, raw);
  }

  // Binds args to ?1, ?2, ... in order, stopping at the first failure.
  template <typename... Args>
  Status bind(const Args&... args) {
    int index = 0;
    Status status;
    ((status = status.ok() ? bind_one(++index, args) : status), ...);
    return status;
  }

  // True while there is a row to read.
  Result<bool> step() {
    int rc = sqlite3_step(stmt_.get());
    if (rc == SQLITE_ROW) {
      return true;
    }
    if (rc == SQLITE_DONE) {
      return false;
    }
    return sqlite_error(db_, rc, what_);
  }

  // Runs a statement that returns no rows.
  Status run() {
    KEKD_ASSIGN_OR_RETURN(bool row, step());
    if (row) {
      return Error(Code::kInternal, "store: " + std::string(what_) + ": unexpected row");
    }
    return ok_status();
  }

  bool is_null(int column) { return sqlite3_column_type(stmt_.get(), column) == SQLITE_NULL; }
  std::int64_t integer(int column) { return sqlite3_column_int64(stmt_.get(), column); }
  std::string text(int column) {
    const unsigned char* data = sqlite3_column_text(stmt_.get(), column);
    int size = sqlite3_column_bytes(stmt_.get(), column);
    return data != nullptr ? std::string(reinterpret_cast<const char*>(data), size) : "";
  }

 private:
  Statement(sqlite3* db, std::string_view what, sqlite3_stmt* stmt)
      : db_(db), what_(what), stmt_(stmt) {}

  Status bind_one(int index, std::string_view value) {
    // A default-constructed string_view has a null data(), which SQLite would bind as NULL.
    const char* data = value.data() != nullptr ? value.data() : "";
    return check(
        sqlite3_bind_text64(stmt_.get(), index, data, value.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
  }
  Status bind_one(int index, std::int64_t value) {
    return check(sqlite3_bind_int64(stmt_.get(), index, value));
  }
  Status bind_one(int index, const std::optional<std::int64_t>& value) {
    return value ? bind_one(index, *value) : check(sqlite3_bind_null(stmt_.get(), index));
  }
  Status check(int rc) { return rc == SQLITE_OK ? ok_status() : sqlite_error(db_, rc, what_); }

  sqlite3* db_;
  std::string_view what_;  // always a string literal
  std::unique_ptr<sqlite3_stmt, StatementDeleter> stmt_;
};

// Fixed SQL only: the statements that take user data are prepared and bound.
Status exec(sqlite3* db, std::string_view what, const char* sql) {
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
  return rc == SQLITE_OK ? ok_status() : sqlite_error(db, rc, what);
}

// A write transaction that rolls back unless committed.
class Transaction {
 public:
  static Result<Transaction> begin(sqlite3* db) {
    KEKD_RETURN_IF_ERROR(exec(db, "begin transaction", "BEGIN IMMEDIATE"));
    return Transaction(db);
  }

  Transaction(Transaction&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}
  Transaction& operator=(Transaction&&) = delete;

  ~Transaction() {
    // SQLite rolls back by itself after some errors (SQLITE_FULL, SQLITE_IOERR); then there is
    // nothing left to roll back. A failing ROLLBACK cannot be reported from here, and SQLite
    // rolls back the open transaction when the connection closes anyway.
    if (db_ != nullptr && sqlite3_get_autocommit(db_) == 0) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    }
  }

  Status commit() {
    KEKD_RETURN_IF_ERROR(exec(db_, "commit", "COMMIT"));
    db_ = nullptr;
    return ok_status();
  }

 private:
  explicit Transaction(sqlite3* db) : db_(db) {}

  sqlite3* db_;
};

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

int SqliteStore::current_schema_version() { return static_cast<int>(std::size(kMigrations)); }

SqliteStore::SqliteStore(sqlite3* db) : db_(db) {}

// Every statement and transaction is owned by a scope that has ended, so nothing keeps the
// connection busy; close_v2 would defer the close rather than leak if something did.
SqliteStore::~SqliteStore() { sqlite3_close_v2(db_); }

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

}  // namespace kekd::store
