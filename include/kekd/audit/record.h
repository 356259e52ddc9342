// The audit record and checkpoint formats of docs/audit.md: the canonical JSON, the record hash
// and the checkpoint message. Pure functions; the log (audit_log.h) and the verifier (verify.h)
// both build on them, so the writer and the checker cannot drift apart.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "kekd/common/bytes.h"
#include "kekd/common/error.h"
#include "kekd/common/time.h"

namespace kekd::audit {

// Bounds of the members a caller supplies, in bytes after sanitize() (kInvalidArgument beyond).
inline constexpr std::size_t kMaxRequestIdBytes = 128;
inline constexpr std::size_t kMaxPrincipalBytes = 256;
inline constexpr std::size_t kMaxActionBytes = 64;
inline constexpr std::size_t kMaxKeyBytes = 128;
inline constexpr std::size_t kMaxSubjectBytes = 128;

// What happened, as the caller (the API) reports it. Never a plaintext, ciphertext, secret or
// PIN: there is no member that could carry one. The log adds seq, time and prev.
struct AuditEvent {
  std::string request_id;                // the X-Request-Id; empty for what kekd does by itself
  std::string principal;                 // a client id, an operator; for an authentication failure
                                         // the claimed identity, never the presented secret
  std::string action;                    // [a-z0-9_.-]{1,64}, e.g. "key.unwrap"
  std::optional<std::string> key;        // the key name, when one is involved
  std::optional<std::uint32_t> version;  // >= 1, when one is involved
  std::optional<std::string> subject;    // what else the action concerns: a ceremony id for a
                                         // ceremony step, the client id for a client change
  std::optional<Code> error;             // the outcome: std::nullopt is "ok"

  bool operator==(const AuditEvent&) const = default;
};

// One record of the chain, as stored and hashed.
struct Record {
  std::int64_t seq = 0;
  UnixMillis time = 0;
  std::string request_id;
  std::string principal;
  std::string action;
  std::optional<std::string> key;
  std::optional<std::uint32_t> version;
  std::optional<std::string> subject;
  // The error code name for outcome "error", std::nullopt for "ok". A name, not a Code: a
  // verifier must be able to read records that a newer kekd wrote with codes it does not know.
  std::optional<std::string> error;
  std::string prev;  // the hash of record seq - 1; kGenesisHash for record 1

  bool operator==(const Record&) const = default;
};

// The prev of record 1.
inline constexpr std::string_view kGenesisHash =
    "0000000000000000000000000000000000000000000000000000000000000000";

// Replaces invalid UTF-8 and the control characters U+0000..U+001F and U+007F by U+FFFD, so that
// a record string never needs an escape other than \" and \\ (docs/audit.md).
std::string sanitize(std::string_view text);

// sanitize(text), cut to at most max bytes (max >= 3) at a character boundary and ending in "…"
// when it was longer: for strings from a request (a key name in the path, a request id) that may
// exceed the bounds above but must still be recorded.
std::string bounded(std::string_view text, std::size_t max);

// Sanitizes the event's strings and checks it against the bounds above (and the action
// alphabet): what AuditLog::record does before queueing it.
Result<AuditEvent> normalize(AuditEvent event);

// The record an event becomes at a place in the chain.
Record make_record(const AuditEvent& event, std::int64_t seq, UnixMillis time,
                   std::string_view prev);

// The canonical JSON of docs/audit.md: the eleven members sorted by name, no whitespace, UTF-8.
// The record's strings must be sanitized (make_record of a normalized event is).
std::string canonical_json(const Record& record);

// Lowercase hex SHA-256 of bytes: the hash of a record's canonical JSON, or of anything else.
std::string sha256_hex(std::string_view bytes);

// "2026-11-23T10:00:00.123Z": RFC 3339, UTC, exactly three fraction digits.
std::string format_time(UnixMillis t);
// Accepts exactly what format_time writes; std::nullopt for anything else.
std::optional<UnixMillis> parse_time(std::string_view text);

// A signed checkpoint of the chain at record seq.
struct Checkpoint {
  std::int64_t seq = 0;
  std::string hash;  // the hash of record seq
  // The seq of the checkpoint before this one (0 for the first): checkpoints form a chain of
  // their own, so that deleting one in the middle shows.
  std::int64_t prev_seq = 0;
  UnixMillis time = 0;
  Bytes signature;  // DER ECDSA P-256 over SHA-256 of checkpoint_message(...)

  bool operator==(const Checkpoint&) const = default;
};

// The exact bytes kekd signs:
// "kekd-audit-checkpoint v1\nseq=<seq>\nhash=<hex>\nprev_seq=<prev_seq>\ntime=<time>\n".
// time is taken as text so that a verifier signs off exactly what the checkpoint says.
std::string checkpoint_message(std::int64_t seq, std::string_view hash, std::int64_t prev_seq,
                               std::string_view time);

// {"hash","prev_seq","seq","signature" (base64),"time"}: canonical JSON as for records.
std::string checkpoint_json(const Checkpoint& checkpoint);

}  // namespace kekd::audit
