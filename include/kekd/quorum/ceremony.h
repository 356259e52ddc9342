// A quorum ceremony (DESIGN §5): a proposed action, the statement operators sign, the approvals
// accepted so far, and where it is in its life.
//
//   open ──(M-th valid approval)──> executing ──> executed
//     │                                 └───────> failed     (the keyring refused for good)
//     ├──(cancel)──> cancelled
//     └──(expires-at passes)──> expired
//
// `executing` is internal: it is recorded in the same commit as the M-th approval and before the
// HSM is touched, so a crash in the middle leaves a ceremony that start-up reconciliation
// finishes (CeremonyService::reconcile). Clients see the five states of the spec: an executing
// ceremony is shown as "open" with approvals_needed() == 0, and no further approval or cancel is
// accepted for it. Finished ceremonies never change.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kekd/common/bytes.h"
#include "kekd/common/error.h"
#include "kekd/quorum/statement.h"
#include "kekd/store/ceremony_store.h"

namespace kekd::quorum {

using store::CeremonyState;

// The state as clients see it: "open", "executed", "cancelled", "expired", "failed" (an
// executing ceremony is "open").
std::string_view client_state_name(CeremonyState state);

struct Approval {
  std::string operator_name;
  UnixMillis at = 0;
  Bytes signature;  // as verified over the statement; public (part of the transcript)

  bool operator==(const Approval&) const = default;
};

struct Ceremony {
  Statement terms;        // what the statement says, parsed
  std::string statement;  // the exact bytes operators sign
  CeremonyState state = CeremonyState::kOpen;
  std::vector<Approval> approvals;  // accepted ones, in the order accepted
  std::optional<UnixMillis> finished_at;
  std::optional<std::string> result;  // one line, once finished

  const std::string& id() const { return terms.id; }
  // How many more approvals execution needs; 0 once the threshold is reached.
  std::uint32_t approvals_needed() const;

  bool operator==(const Ceremony&) const = default;
};

// A ceremony from its stored record. The statement is the source of truth; the record's
// indexed copies of its fields must agree with it, or the record is damaged (kInternal).
Result<Ceremony> ceremony_from_record(const store::CeremonyRecord& record);

}  // namespace kekd::quorum
