// SqliteStore::backup_to: a consistent copy of the whole database, taken with SQLite's online
// backup API while kekd serves.
//
// Consistency: the copy is read through the store's own connection. A write that kekd makes
// between two steps goes through that same connection, and SQLite applies it to the pages already
// copied as well; a write by another process (kekd init, a second kekd on the file) makes the next
// step start over. Either way the finished copy is one committed state of the source, never a mix.
// mu_ is held for one step at a time, so requests wait for one chunk of pages, not the whole copy.
//
// Durability: the copy is opened afresh and checked with PRAGMA integrity_check, then flushed with
// fsync (the file, and its directory for the new entry), so an ok Status means a file on disk that
// SqliteStore::open can use. A failed backup removes what it created.
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "kekd/store/sqlite_store.h"
#include "sqlite_util.h"

namespace kekd::store {

using sqlite::sqlite_error;
using sqlite::Statement;

namespace {

// 256 pages of 4 KiB: about 1 MiB per step, a few milliseconds of holding mu_.
constexpr int kPagesPerStep = 256;
// How long a step may keep answering SQLITE_BUSY (another process holding a lock) before the
// backup gives up, as the store's busy timeout does for other calls.
constexpr auto kBusyBudget = std::chrono::seconds(5);

// The files SQLite keeps beside a database: a stale one of these would be taken for part of the
// new copy (a hot journal is rolled back into it), so none may exist beforehand.
constexpr const char* kSidecars[] = {"-journal", "-wal", "-shm"};

Error file_error(std::string_view what, const std::string& path, int err) {
  Code code = Code::kInvalidArgument;  // a directory that is missing, not writable, read-only
  if (err == EEXIST) {
    code = Code::kAlreadyExists;
  } else if (err == ENOSPC || err == EDQUOT || err == EIO) {
    code = Code::kUnavailable;
  }
  return Error(
      code, "store: backup: cannot " + std::string(what) + " " + path + ": " + std::strerror(err));
}

struct ConnectionCloser {
  // Every statement on these connections is finalized before they close.
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using Connection = std::unique_ptr<sqlite3, ConnectionCloser>;

Result<Connection> open_connection(const std::string& path, int flags) {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  Connection db(raw);  // a handle to close even when the open failed
  if (rc == SQLITE_OK) {
    rc = sqlite3_extended_result_codes(raw, 1);
  }
  if (rc != SQLITE_OK) {
    return sqlite_error(raw, rc, "backup: open " + path);
  }
  return db;
}

// Creates the empty file the copy goes into: O_EXCL refuses an existing path, including a
// symlink, and the mode is 0600 whatever the umask, since the copy holds wrapped client secrets.
// The descriptor is closed before SQLite opens the file: closing any descriptor of a file drops
// every POSIX lock this process holds on it, SQLite's included.
Status create_private_file(const std::string& path) {
  for (const char* sidecar : kSidecars) {
    struct stat st;
    if (::lstat((path + sidecar).c_str(), &st) == 0) {
      return Error(Code::kAlreadyExists,
                   "store: backup: " + path + sidecar + " exists; a copy goes to a new path only");
    }
  }
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    return file_error("create", path, errno);
  }
  int err = ::fchmod(fd, 0600) == 0 ? 0 : errno;
  ::close(fd);
  return err == 0 ? ok_status() : file_error("set the mode of", path, err);
}

Status fsync_path(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) {
    return file_error("open", path, errno);
  }
  int err = ::fsync(fd) == 0 ? 0 : errno;
  ::close(fd);
  return err == 0 ? ok_status() : file_error("flush", path, err);
}

// The copy opened afresh, as a restore would open it, made a file of its own and checked.
//
// The pages come from a WAL database, so the copy says WAL in its header; it is switched to a
// rollback journal, which SqliteStore::open switches back. A backup is then one self-contained
// file: reading it (kekctl audit verify, sqlite3) creates no -wal or -shm file beside it and
// works on read-only media. Then every page and index must check out.
Status finish_copy(const std::string& path) {
  KEKD_ASSIGN_OR_RETURN(Connection db, open_connection(path, SQLITE_OPEN_READWRITE));
  KEKD_ASSIGN_OR_RETURN(Statement journal, Statement::prepare(db.get(), "backup: leave WAL mode",
                                                              "PRAGMA journal_mode = DELETE"));
  KEKD_ASSIGN_OR_RETURN(bool switched, journal.step());
  if (!switched || journal.text(0) != "delete") {
    return Error(Code::kInternal, "store: backup: the copy " + path + " stays in WAL mode");
  }
  KEKD_ASSIGN_OR_RETURN(Statement check, Statement::prepare(db.get(), "backup: check the copy",
                                                            "PRAGMA integrity_check"));
  KEKD_ASSIGN_OR_RETURN(bool row, check.step());
  std::string verdict = row ? check.text(0) : "no answer";
  if (verdict != "ok") {
    return Error(Code::kInternal,
                 "store: backup: the copy " + path + " fails PRAGMA integrity_check: " + verdict);
  }
  return ok_status();
}

void remove_copy(const std::string& path) {
  ::unlink(path.c_str());
  for (const char* sidecar : kSidecars) {
    ::unlink((path + sidecar).c_str());
  }
}

}  // namespace

Status SqliteStore::backup_to(const std::string& path) {
  KEKD_RETURN_IF_ERROR(create_private_file(path));
  Status status = [&]() -> Status {
    {
      // NOMUTEX like the store's own connection: mu_ guards it too, because SQLite writes the
      // pages of a concurrent write into it from whichever thread makes that write.
      KEKD_ASSIGN_OR_RETURN(Connection copy,
                            open_connection(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX));
      std::unique_lock lock(mu_);
      sqlite3_backup* backup = sqlite3_backup_init(copy.get(), "main", db_, "main");
      if (backup == nullptr) {
        return sqlite_error(copy.get(), sqlite3_extended_errcode(copy.get()),
                            "backup: start copying to " + path);
      }
      auto busy_since = std::chrono::steady_clock::time_point::max();
      int step = SQLITE_OK;
      for (;;) {
        step = sqlite3_backup_step(backup, kPagesPerStep);
        const int primary = step & 0xff;
        if (step == SQLITE_DONE ||
            (step != SQLITE_OK && primary != SQLITE_BUSY && primary != SQLITE_LOCKED)) {
          break;  // done, or an error that sqlite3_backup_finish reports
        }
        auto now = std::chrono::steady_clock::now();
        if (step == SQLITE_OK) {
          busy_since = std::chrono::steady_clock::time_point::max();
        } else if (busy_since == std::chrono::steady_clock::time_point::max()) {
          busy_since = now;
        } else if (now - busy_since > kBusyBudget) {
          break;
        }
        // Let the requests that queued on mu_ during this step in before the next one.
        lock.unlock();
        if (step == SQLITE_OK) {
          std::this_thread::yield();
        } else {
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        lock.lock();
      }
      // Detaches from the source connection (hence under mu_) and commits the copy, or returns
      // the error of the failed step. Busy steps are not errors to it: a copy given up while the
      // source stayed locked would look finished, so the last step's answer decides that.
      int rc = sqlite3_backup_finish(backup);
      lock.unlock();
      if (rc != SQLITE_OK) {
        return sqlite_error(copy.get(), rc, "backup: copy to " + path);
      }
      if (step != SQLITE_DONE) {
        return Error(Code::kUnavailable,
                     "store: backup: the store stayed locked by another process for " +
                         std::to_string(kBusyBudget.count()) + " s; nothing was copied");
      }
    }  // the copy's connection is closed here, before it is checked and flushed
    KEKD_RETURN_IF_ERROR(finish_copy(path));
    KEKD_RETURN_IF_ERROR(fsync_path(path, O_RDONLY));
    std::filesystem::path dir = std::filesystem::path(path).parent_path();
    return fsync_path(dir.empty() ? "." : dir.string(), O_RDONLY | O_DIRECTORY);
  }();
  if (!status.ok()) {
    remove_copy(path);
  }
  return status;
}

}  // namespace kekd::store
