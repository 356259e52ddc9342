// Persistence of the audit log (DESIGN §9, docs/audit.md): the hash chain of records and its signed
// checkpoints.
//
// The store keeps text it is given and does not know the record format (audit/ owns it), with one
// exception that must hold across writers: a batch of records is accepted only if it continues
// the chain head the store holds (the next seq, and a prev equal to the last hash), checked inside
// the same transaction as the insert. Two writers on one database (threads of different
// processes, or replicas later) can therefore never fork the chain; the loser gets
// kFailedPrecondition, reloads the head and re-sequences.
//
// Contract: as MetadataStore (each method atomic, thread-safe, an ok Status means durable).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kekd/common/error.h"

namespace kekd::store {

// Bounds the store enforces (kInvalidArgument beyond them).
inline constexpr std::size_t kMaxAuditRecordBytes = 16 * 1024;
inline constexpr std::size_t kMaxAuditCheckpointBytes = 1024;
inline constexpr std::size_t kMaxAuditBatch = 100'000;
inline constexpr std::size_t kMaxAuditPage = 10'000;

// The prev of record 1: the hash of "no record".
inline constexpr std::string_view kAuditGenesisHash =
    "0000000000000000000000000000000000000000000000000000000000000000";

struct AuditRecordRow {
  std::int64_t seq = 0;  // 1, 2, 3, ...
  std::string record;    // the canonical JSON, exactly the bytes hashed
  std::string hash;      // lowercase hex SHA-256 of record

  bool operator==(const AuditRecordRow&) const = default;
};

struct AuditCheckpointRow {
  std::int64_t seq = 0;    // the record it covers
  std::string checkpoint;  // its JSON, signature included

  bool operator==(const AuditCheckpointRow&) const = default;
};

// Records in seq order, and the checkpoints that cover records of this page, in seq order.
struct AuditPage {
  std::vector<AuditRecordRow> records;
  std::vector<AuditCheckpointRow> checkpoints;
};

class AuditStore {
 public:
  virtual ~AuditStore() = default;

  // Appends records in one transaction (the group commit). `prev` is the hash the first record
  // links to; records must have consecutive seqs. kFailedPrecondition (nothing written) unless
  // records[0].seq is one more than the last stored seq (1 for an empty log) and prev is the
  // last stored hash (kAuditGenesisHash for an empty log): another writer moved the head.
  // kInvalidArgument for an empty batch, a gap in seqs, a malformed hash, or a record out of
  // bounds.
  virtual Status append_audit(std::string_view prev,
                              const std::vector<AuditRecordRow>& records) = 0;

  // Stores a checkpoint of record checkpoint.seq, whose hash the caller signed, naming prev_seq
  // (0: none) as its predecessor. kFailedPrecondition unless that record exists with exactly this
  // hash, checkpoint.seq is greater than that of every stored checkpoint, and the last stored
  // checkpoint is still prev_seq: another writer's checkpoint stored between the caller's read
  // of the predecessor and this append would otherwise fork the chain of checkpoints.
  virtual Status append_audit_checkpoint(const AuditCheckpointRow& checkpoint,
                                         std::string_view hash, std::int64_t prev_seq) = 0;

  // The last record (where a restarted log resumes), or std::nullopt for an empty log.
  virtual Result<std::optional<AuditRecordRow>> last_audit() = 0;

  // The checkpoint with the highest seq, or std::nullopt.
  virtual Result<std::optional<AuditCheckpointRow>> last_audit_checkpoint() = 0;

  // Up to `limit` (1..kMaxAuditPage) records with seq > after (after >= 0), and the checkpoints
  // of those records. The next page starts after the last record returned; an empty page means
  // the end of the log.
  virtual Result<AuditPage> read_audit(std::int64_t after, std::size_t limit) = 0;
};

}  // namespace kekd::store
