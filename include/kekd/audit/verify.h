// The offline verifier of docs/audit.md, "What verification checks": the chain, every hash, every
// checkpoint and its signature, with nothing but the audit public key (Botan's ECDSA, no HSM).
// It reads an export (JSON lines) or the store directly, streaming, in constant memory, and stops
// at the first failure, which it names: "record 17: hash does not match", "checkpoint at 40:
// signature does not verify", "record 12 missing (seq jumps from 11 to 13)".
#pragma once

#include <chrono>
#include <cstdint>
#include <istream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kekd/common/bytes.h"
#include "kekd/common/error.h"
#include "kekd/store/audit_store.h"

namespace kekd::audit {

// A record an auditor saw in an earlier verification (typically the last checkpoint's seq and
// hash). The log must still hold it with this hash: that catches a rollback, the deletion of the
// tail together with the checkpoints after it, which the chain alone cannot show.
struct Anchor {
  std::int64_t seq = 0;
  std::string hash;
};

struct VerifyOptions {
  // Records after the last checkpoint fail the verification instead of being a warning
  // (`--require-checkpoint`): right for an export taken after a clean shutdown.
  bool require_checkpoint = false;
  std::optional<Anchor> anchor;
  // A record that waited longer than this for its checkpoint gives a warning: a checkpoint may
  // have been deleted (or the token was unavailable for a while).
  std::chrono::milliseconds max_checkpoint_wait{10'000};
};

struct VerifyResult {
  bool ok = true;
  std::string failure;  // the first bad place, when !ok
  std::int64_t records = 0;
  std::int64_t checkpoints = 0;
  std::int64_t last_seq = 0;             // of the last good record
  std::string last_hash;                 // its hash (64 zeros for an empty log)
  std::int64_t last_checkpoint_seq = 0;  // the record the last good checkpoint covers
  std::int64_t uncovered = 0;            // records after it
  std::vector<std::string> warnings;
};

class Verifier {
 public:
  // public_key: the audit key's SubjectPublicKeyInfo, DER or PEM. kInvalidArgument unless it is
  // an ECDSA P-256 public key.
  static Result<Verifier> create(ByteView public_key, VerifyOptions options = {});

  Verifier(Verifier&&) noexcept;
  Verifier& operator=(Verifier&&) noexcept;
  ~Verifier();

  // One line of an export, without its LF. Returns false once verification has failed (later
  // input is ignored).
  bool add_line(std::string_view line);

  // Rows as the store holds them (in export order, as export_lines() merges them). The stored
  // text must be exactly the canonical form, and a record's hash column its hash.
  bool add_record(const store::AuditRecordRow& row);
  bool add_checkpoint(const store::AuditCheckpointRow& row);

  // The end of the input: coverage and anchor checks, then the result.
  VerifyResult finish();

 private:
  struct Impl;
  explicit Verifier(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Verifies an export read from `in`.
Result<VerifyResult> verify_export(std::istream& in, ByteView public_key,
                                   VerifyOptions options = {});

// Verifies the log in the store, page by page. An error only if the key is unusable or the store
// cannot be read; everything about the log itself is in the result.
Result<VerifyResult> verify_store(store::AuditStore& store, ByteView public_key,
                                  VerifyOptions options = {});

}  // namespace kekd::audit
