// SqliteStore's AuditStore: the tables of schema migration 3, on the same connection (and under
// the same mutex) as the rest of the store, so the audit log is in the one database file.
//
// Writes are BEGIN IMMEDIATE transactions (sqlite_util.h): the chain head is read and extended
// under the database's write lock, so a check-then-insert can never interleave with another
// writer, in this process or another.
#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kekd/store/sqlite_store.h"
#include "sqlite_util.h"

namespace kekd::store {

using sqlite::Statement;
using sqlite::StatementCache;
using sqlite::Transaction;

namespace {

Error invalid(std::string_view what) {
  return Error(Code::kInvalidArgument, "store: audit: " + std::string(what));
}

bool is_hex_hash(std::string_view s) {
  if (s.size() != 64) {
    return false;
  }
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

Status check_batch(std::string_view prev, const std::vector<AuditRecordRow>& records) {
  if (records.empty() || records.size() > kMaxAuditBatch) {
    return invalid("a batch holds 1 to " + std::to_string(kMaxAuditBatch) + " records");
  }
  if (!is_hex_hash(prev)) {
    return invalid("prev is not 64 lowercase hex digits");
  }
  for (std::size_t i = 0; i < records.size(); ++i) {
    const AuditRecordRow& r = records[i];
    if (r.seq < 1 || (i > 0 && r.seq != records[i - 1].seq + 1)) {
      return invalid("the seqs of a batch are consecutive, from 1 up");
    }
    if (!is_hex_hash(r.hash)) {
      return invalid("record " + std::to_string(r.seq) + ": hash is not 64 lowercase hex digits");
    }
    if (r.record.empty() || r.record.size() > kMaxAuditRecordBytes) {
      return invalid("record " + std::to_string(r.seq) + " is empty or longer than " +
                     std::to_string(kMaxAuditRecordBytes) + " bytes");
    }
  }
  return ok_status();
}

Result<std::optional<AuditRecordRow>> select_last(sqlite3* db, StatementCache& cache) {
  KEKD_ASSIGN_OR_RETURN(
      StatementCache::Handle select,
      cache.get(db, "read last audit record",
                "SELECT seq, record, hash FROM audit_records ORDER BY seq DESC LIMIT 1"));
  KEKD_ASSIGN_OR_RETURN(bool found, select->step());
  if (!found) {
    return std::optional<AuditRecordRow>();
  }
  return std::optional<AuditRecordRow>(
      AuditRecordRow{select->integer(0), select->text(1), select->text(2)});
}

Result<std::optional<AuditCheckpointRow>> select_last_checkpoint(sqlite3* db) {
  KEKD_ASSIGN_OR_RETURN(
      Statement select,
      Statement::prepare(
          db, "read last audit checkpoint",
          "SELECT seq, checkpoint FROM audit_checkpoints ORDER BY seq DESC LIMIT 1"));
  KEKD_ASSIGN_OR_RETURN(bool found, select.step());
  if (!found) {
    return std::optional<AuditCheckpointRow>();
  }
  return std::optional<AuditCheckpointRow>(AuditCheckpointRow{select.integer(0), select.text(1)});
}

}  // namespace

Status SqliteStore::append_audit(std::string_view prev,
                                 const std::vector<AuditRecordRow>& records) {
  KEKD_RETURN_IF_ERROR(check_batch(prev, records));
  std::lock_guard lock(mu_);
  // Every batch of the audit writer runs these same statements: they are prepared once.
  KEKD_ASSIGN_OR_RETURN(Transaction tx, Transaction::begin(db_, *statements_));
  KEKD_ASSIGN_OR_RETURN(std::optional<AuditRecordRow> last, select_last(db_, *statements_));
  const std::int64_t next = last ? last->seq + 1 : 1;
  const std::string_view head = last ? std::string_view(last->hash) : kAuditGenesisHash;
  if (records.front().seq != next || prev != head) {
    return Error(Code::kFailedPrecondition,
                 "store: audit: the batch starts at record " + std::to_string(records.front().seq) +
                     " after hash " + std::string(prev) + ", but the chain head is record " +
                     std::to_string(next - 1) + " with hash " + std::string(head) +
                     " (another writer moved it)");
  }
  KEKD_ASSIGN_OR_RETURN(
      StatementCache::Handle insert,
      statements_->get(db_, "append audit record",
                       "INSERT INTO audit_records (seq, record, hash) VALUES (?1, ?2, ?3)"));
  for (const AuditRecordRow& r : records) {
    KEKD_RETURN_IF_ERROR(insert->bind(r.seq, r.record, r.hash));
    KEKD_RETURN_IF_ERROR(insert->run());
    insert->reset();
  }
  return tx.commit();
}

Status SqliteStore::append_audit_checkpoint(const AuditCheckpointRow& checkpoint,
                                            std::string_view hash, std::int64_t prev_seq) {
  if (checkpoint.seq < 1 || checkpoint.checkpoint.empty() ||
      checkpoint.checkpoint.size() > kMaxAuditCheckpointBytes || !is_hex_hash(hash)) {
    return invalid("a checkpoint covers a record (seq >= 1) with a hash, in at most " +
                   std::to_string(kMaxAuditCheckpointBytes) + " bytes");
  }
  std::lock_guard lock(mu_);
  KEKD_ASSIGN_OR_RETURN(Transaction tx, Transaction::begin(db_));
  KEKD_ASSIGN_OR_RETURN(Statement record,
                        Statement::prepare(db_, "read audit record",
                                           "SELECT hash FROM audit_records WHERE seq = ?1"));
  KEKD_RETURN_IF_ERROR(record.bind(checkpoint.seq));
  KEKD_ASSIGN_OR_RETURN(bool found, record.step());
  const std::string seq = std::to_string(checkpoint.seq);
  if (!found) {
    return Error(Code::kFailedPrecondition,
                 "store: audit: a checkpoint of record " + seq + ", which is not stored");
  }
  if (record.text(0) != hash) {
    return Error(Code::kFailedPrecondition,
                 "store: audit: the checkpoint's hash is not that of record " + seq);
  }
  KEKD_ASSIGN_OR_RETURN(std::optional<AuditCheckpointRow> last, select_last_checkpoint(db_));
  if (last && last->seq >= checkpoint.seq) {
    return Error(Code::kFailedPrecondition, "store: audit: a checkpoint of record " + seq +
                                                " is not after the last one, of record " +
                                                std::to_string(last->seq));
  }
  if ((last ? last->seq : 0) != prev_seq) {
    return Error(Code::kFailedPrecondition,
                 "store: audit: the checkpoint of record " + seq + " names the checkpoint of " +
                     std::to_string(prev_seq) + " as its predecessor, but the last one is of " +
                     std::to_string(last ? last->seq : 0) + " (another writer checkpointed)");
  }
  KEKD_ASSIGN_OR_RETURN(
      Statement insert,
      Statement::prepare(db_, "append audit checkpoint",
                         "INSERT INTO audit_checkpoints (seq, checkpoint) VALUES (?1, ?2)"));
  KEKD_RETURN_IF_ERROR(insert.bind(checkpoint.seq, checkpoint.checkpoint));
  KEKD_RETURN_IF_ERROR(insert.run());
  return tx.commit();
}

Result<std::optional<AuditRecordRow>> SqliteStore::last_audit() {
  std::lock_guard lock(mu_);
  return select_last(db_, *statements_);
}

Result<std::optional<AuditCheckpointRow>> SqliteStore::last_audit_checkpoint() {
  std::lock_guard lock(mu_);
  return select_last_checkpoint(db_);
}

Result<AuditPage> SqliteStore::read_audit(std::int64_t after, std::size_t limit) {
  if (after < 0 || limit < 1 || limit > kMaxAuditPage) {
    return invalid("a page starts after a seq >= 0 and holds 1 to " +
                   std::to_string(kMaxAuditPage) + " records");
  }
  std::lock_guard lock(mu_);
  AuditPage page;
  KEKD_ASSIGN_OR_RETURN(Statement records, Statement::prepare(db_, "read audit records", R"sql(
SELECT seq, record, hash FROM audit_records WHERE seq > ?1 ORDER BY seq LIMIT ?2
)sql"));
  KEKD_RETURN_IF_ERROR(records.bind(after, static_cast<std::int64_t>(limit)));
  for (;;) {
    KEKD_ASSIGN_OR_RETURN(bool row, records.step());
    if (!row) {
      break;
    }
    page.records.push_back(AuditRecordRow{records.integer(0), records.text(1), records.text(2)});
  }
  if (page.records.empty()) {
    return page;
  }
  // Two statements, no snapshot between them: none is needed, because a checkpoint is only ever
  // stored for a record that exists, and rows are never changed or removed. Every checkpoint in
  // the range read here covers a record of this page, whenever another writer added it.
  KEKD_ASSIGN_OR_RETURN(Statement checkpoints,
                        Statement::prepare(db_, "read audit checkpoints", R"sql(
SELECT seq, checkpoint FROM audit_checkpoints WHERE seq > ?1 AND seq <= ?2 ORDER BY seq
)sql"));
  KEKD_RETURN_IF_ERROR(checkpoints.bind(after, page.records.back().seq));
  for (;;) {
    KEKD_ASSIGN_OR_RETURN(bool row, checkpoints.step());
    if (!row) {
      return page;
    }
    page.checkpoints.push_back(AuditCheckpointRow{checkpoints.integer(0), checkpoints.text(1)});
  }
}

}  // namespace kekd::store
