// Persistence of the quorum (DESIGN §5): operator sets with their history, ceremonies, approvals.
//
// Plain records, so that quorum/ owns the meaning and every backend (SQLite now, PostgreSQL for
// several replicas later) only has to keep them. The rules that must hold across replicas are
// enforced here, inside one transaction each, not only by the caller:
// - a ceremony is counted against exactly the operator set it names, and a new ceremony can only
//   name the set in force;
// - one ceremony per key is open or executing at a time (and one set-operators ceremony);
// - an operator approves a ceremony at most once, only while it is open and not past expiry;
// - the approval that reaches the threshold moves the ceremony to executing in the same commit,
//   so exactly one caller ever executes it;
// - a set-operators ceremony installs its set, finishes, and cancels every other open ceremony
//   in one commit.
//
// Contract for every implementation: as MetadataStore (each method atomic, thread-safe, an ok
// Status means durable).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kekd/common/bytes.h"
#include "kekd/common/error.h"
#include "kekd/store/metadata_store.h"

namespace kekd::store {

// The lifecycle of a ceremony. kExecuting means the threshold was reached and the action is in
// progress (or must be resumed after a crash); the API shows it as "open" (quorum/ceremony.h).
enum class CeremonyState { kOpen, kExecuting, kExecuted, kCancelled, kExpired, kFailed };

// These names are persisted (ceremonies.state, with a CHECK listing them).
inline std::string_view ceremony_state_name(CeremonyState state) {
  switch (state) {
    case CeremonyState::kOpen:
      return "open";
    case CeremonyState::kExecuting:
      return "executing";
    case CeremonyState::kExecuted:
      return "executed";
    case CeremonyState::kCancelled:
      return "cancelled";
    case CeremonyState::kExpired:
      return "expired";
    case CeremonyState::kFailed:
      return "failed";
  }
  return "invalid";
}

inline std::optional<CeremonyState> parse_ceremony_state(std::string_view name) {
  constexpr std::array kAll = {CeremonyState::kOpen,     CeremonyState::kExecuting,
                               CeremonyState::kExecuted, CeremonyState::kCancelled,
                               CeremonyState::kExpired,  CeremonyState::kFailed};
  for (CeremonyState state : kAll) {
    if (ceremony_state_name(state) == name) {
      return state;
    }
  }
  return std::nullopt;
}

// Finished ceremonies never change again.
inline bool is_finished(CeremonyState state) {
  return state != CeremonyState::kOpen && state != CeremonyState::kExecuting;
}

// Bounds the store enforces on what it is given (kInvalidArgument beyond them).
inline constexpr std::size_t kMaxStoredStatementBytes = 64 * 1024;
inline constexpr std::size_t kMaxStoredSetBytes = 32 * 1024;
inline constexpr std::size_t kMaxStoredResultBytes = 1024;
inline constexpr std::size_t kMaxStoredSignatureBytes = 1024;

struct OperatorSetRecord {
  std::string hash;       // "sha256:<hex>" of canonical
  std::string canonical;  // the canonical text (docs/ceremony-formats.md)
  std::uint32_t threshold = 0;

  bool operator==(const OperatorSetRecord&) const = default;
};

// One installation of an operator set.
struct OperatorSetChange {
  std::int64_t seq = 0;  // 1, 2, 3, ... in installation order
  std::string hash;
  UnixMillis installed_at = 0;
  std::string ceremony_id;  // the set-operators ceremony; empty for the genesis set (kekd init)

  bool operator==(const OperatorSetChange&) const = default;
};

struct ApprovalRecord {
  std::string operator_name;
  Bytes signature;  // as submitted and verified; public, part of the transcript
  UnixMillis at = 0;

  bool operator==(const ApprovalRecord&) const = default;
};

struct CeremonyRecord {
  std::string id;
  std::string action;  // "create-key", ... (quorum/action.h)
  std::string key;     // empty for set-operators
  CeremonyState state = CeremonyState::kOpen;
  std::string operator_set_hash;  // the set that must approve
  std::uint32_t threshold = 0;    // its M
  std::string statement;          // the exact bytes operators sign
  std::string proposed_by;
  UnixMillis created_at = 0;
  UnixMillis expires_at = 0;
  std::optional<UnixMillis> finished_at;  // set exactly when finished
  std::optional<std::string> result;      // one line; set exactly when finished
  std::vector<ApprovalRecord> approvals;  // in the order accepted

  bool operator==(const CeremonyRecord&) const = default;
};

class CeremonyStore {
 public:
  virtual ~CeremonyStore() = default;

  // The operator set in force (the one installed last), or std::nullopt before `kekd init`.
  virtual Result<std::optional<OperatorSetRecord>> current_operator_set() = 0;

  // A set that was ever installed, by hash.
  virtual Result<std::optional<OperatorSetRecord>> find_operator_set(std::string_view hash) = 0;

  // Every installation in order, the genesis set first.
  virtual Result<std::vector<OperatorSetChange>> operator_set_history() = 0;

  // Installs the genesis set. kFailedPrecondition if a set was ever installed.
  virtual Status init_operator_set(const OperatorSetRecord& set, UnixMillis at) = 0;

  // Inserts a new ceremony: state open, no approvals, no result. kFailedPrecondition if it does
  // not name the set in force, or another ceremony for the same key (for set-operators: another
  // set-operators ceremony) is open or executing; kAlreadyExists if the id is taken.
  virtual Status create_ceremony(const CeremonyRecord& ceremony) = 0;

  virtual Result<std::optional<CeremonyRecord>> find_ceremony(std::string_view id) = 0;

  // All ceremonies, or those in one state, oldest first.
  virtual Result<std::vector<CeremonyRecord>> list_ceremonies(
      std::optional<CeremonyState> state) = 0;

  // Records an approval and, if it is the threshold-th, moves the ceremony to executing, in one
  // transaction; returns the ceremony as committed. kNotFound for an unknown ceremony;
  // kFailedPrecondition if it is not open or approval.at is not before expires_at;
  // kDuplicateApproval if this operator has approved it already. (The signature is the caller's
  // to verify: the store does not know the statement format.)
  virtual Result<CeremonyRecord> add_approval(std::string_view id,
                                              const ApprovalRecord& approval) = 0;

  // Finishes a ceremony: open -> cancelled or expired, executing -> executed or failed (any
  // other pair is kInvalidArgument), with its time and one-line result. kNotFound for an unknown
  // ceremony; kFailedPrecondition if it is not in state `from`.
  virtual Status finish_ceremony(std::string_view id, CeremonyState from, CeremonyState to,
                                 UnixMillis at, std::string_view result) = 0;

  // Executes a set-operators ceremony in one transaction: keeps new_set, installs it as the set
  // in force, moves the ceremony from executing to executed with `result`, and cancels every
  // other open ceremony with `cancel_result`. kNotFound; kFailedPrecondition if the ceremony is
  // not executing.
  virtual Status change_operator_set(std::string_view id, const OperatorSetRecord& new_set,
                                     UnixMillis at, std::string_view result,
                                     std::string_view cancel_result) = 0;
};

}  // namespace kekd::store
