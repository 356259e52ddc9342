// Helpers shared by the SQLite store's source files (sqlite_store.cc, and sqlite_audit_store.cc for
// the audit tables): the error mapping, a prepared-statement wrapper and a write transaction. Kept
// out of include/ on purpose: only src/store sees SQLite types.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "kekd/common/bytes.h"
#include "kekd/common/error.h"

namespace kekd::store::sqlite {

// The one place SQLite result codes become kekd Codes. rc must be an extended code (enabled at
// open): only the extended code tells a taken name or id apart from other constraint failures.
inline Error sqlite_error(sqlite3* db, int rc, std::string_view what) {
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

  // Makes the statement ready to run again with new bindings. sqlite3_reset only repeats the
  // error of the last step, which step() already reported.
  void reset() { sqlite3_reset(stmt_.get()); }

  // Prepared once to be run many times (StatementCache): SQLite keeps it off its lookaside.
  static Result<Statement> prepare_persistent(sqlite3* db, std::string_view what,
                                              std::string_view sql) {
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
    if (rc != SQLITE_OK) {
      return sqlite_error(db, rc, what);
    }
    return Statement(db, what, raw);
  }

  // Reset, and every binding back to NULL: a reused statement keeps no earlier request's values.
  void clear() {
    sqlite3_reset(stmt_.get());
    sqlite3_clear_bindings(stmt_.get());
  }

  bool is_null(int column) { return sqlite3_column_type(stmt_.get(), column) == SQLITE_NULL; }
  std::int64_t integer(int column) { return sqlite3_column_int64(stmt_.get(), column); }
  std::string text(int column) {
    const unsigned char* data = sqlite3_column_text(stmt_.get(), column);
    int size = sqlite3_column_bytes(stmt_.get(), column);
    return data != nullptr ? std::string(reinterpret_cast<const char*>(data), size) : "";
  }
  Bytes blob(int column) {
    const auto* data = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt_.get(), column));
    int size = sqlite3_column_bytes(stmt_.get(), column);
    return data != nullptr ? Bytes(data, data + size) : Bytes();
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
  Status bind_one(int index, ByteView value) {
    // As with text: an empty span may have a null data(), which SQLite would bind as NULL.
    static constexpr std::uint8_t kEmpty = 0;
    const void* data = value.data() != nullptr ? value.data() : &kEmpty;
    return check(sqlite3_bind_blob64(stmt_.get(), index, data, value.size(), SQLITE_TRANSIENT));
  }
  Status check(int rc) { return rc == SQLITE_OK ? ok_status() : sqlite_error(db_, rc, what_); }

  sqlite3* db_;
  std::string_view what_;  // always a string literal
  std::unique_ptr<sqlite3_stmt, StatementDeleter> stmt_;
};

// Statements prepared once per connection and reused, for the paths that run the same few
// statements over and over (the audit writer's every batch): preparing parses and plans the SQL
// each time. Keyed by the address of the SQL, which must be a string literal. Not thread-safe:
// the store's mutex guards it with the connection.
class StatementCache {
 public:
  // A cached statement in use: cleared (reset, bindings dropped) when the handle goes, so that an
  // unfinished SELECT never holds a read transaction open between calls.
  class Handle {
   public:
    explicit Handle(Statement& statement) : statement_(&statement) {}
    Handle(Handle&& other) noexcept : statement_(std::exchange(other.statement_, nullptr)) {}
    Handle& operator=(Handle&&) = delete;
    ~Handle() {
      if (statement_ != nullptr) statement_->clear();
    }
    Statement* operator->() const { return statement_; }
    Statement& operator*() const { return *statement_; }

   private:
    Statement* statement_;
  };

  Result<Handle> get(sqlite3* db, std::string_view what, const char* sql) {
    auto it = statements_.find(sql);
    if (it == statements_.end()) {
      KEKD_ASSIGN_OR_RETURN(Statement prepared, Statement::prepare_persistent(db, what, sql));
      it = statements_.emplace(sql, std::move(prepared)).first;
    }
    return Handle(it->second);
  }

  // Runs a statement that returns no rows (BEGIN, COMMIT) from the cache.
  Status run(sqlite3* db, std::string_view what, const char* sql) {
    KEKD_ASSIGN_OR_RETURN(Handle statement, get(db, what, sql));
    return statement->run();
  }

 private:
  std::unordered_map<const char*, Statement> statements_;
};

// Fixed SQL only: the statements that take user data are prepared and bound.
inline Status exec(sqlite3* db, std::string_view what, const char* sql) {
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
  return rc == SQLITE_OK ? ok_status() : sqlite_error(db, rc, what);
}

// A write transaction that rolls back unless committed.
class Transaction {
 public:
  static Result<Transaction> begin(sqlite3* db) {
    KEKD_RETURN_IF_ERROR(exec(db, "begin transaction", "BEGIN IMMEDIATE"));
    return Transaction(db, nullptr);
  }
  // The same, with BEGIN and COMMIT from a statement cache (hot paths).
  static Result<Transaction> begin(sqlite3* db, StatementCache& cache) {
    KEKD_RETURN_IF_ERROR(cache.run(db, "begin transaction", "BEGIN IMMEDIATE"));
    return Transaction(db, &cache);
  }

  Transaction(Transaction&& other) noexcept
      : db_(std::exchange(other.db_, nullptr)), cache_(other.cache_) {}
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
    KEKD_RETURN_IF_ERROR(cache_ != nullptr ? cache_->run(db_, "commit", "COMMIT")
                                           : exec(db_, "commit", "COMMIT"));
    db_ = nullptr;
    return ok_status();
  }

 private:
  Transaction(sqlite3* db, StatementCache* cache) : db_(db), cache_(cache) {}

  sqlite3* db_;
  StatementCache* cache_;
};

}  // namespace kekd::store::sqlite
