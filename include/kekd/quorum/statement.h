// The ceremony statement: the exact bytes that operators read and sign (DESIGN §5,
// docs/ceremony-formats.md).
//
//   kekd ceremony v1
//   id: 9c1f0e2ab3d44c5e8f7a1b2c3d4e5f60
//   action: schedule-destroy-version
//   key: payments                                  all actions but set-operators
//   version: 1                                     the four version state changes
//   destroy-after: 2026-12-23T10:00:00Z            schedule-destroy-version
//   operator: <name> <algorithm> <base64 SPKI>     set-operators: the proposed set, sorted by
//   new-threshold: 2                               name, one line per member, then its M
//   operator-set: sha256:<hex>                     the set that must approve, by hash
//   threshold: 2                                   and its M
//   proposed-by: admin
//   proposed-at: 2026-11-23T10:00:00Z
//   expires-at: 2026-11-24T10:00:00Z
//
// Printable ASCII, LF line endings, a final LF, no trailing spaces, fixed field order, absent
// fields absent (never empty).
//
// Security model: everything that makes one ceremony different from another is inside what is
// signed. The random id binds an approval to this one ceremony (an approval of a previous or a
// parallel ceremony with otherwise identical text does not verify: Vault's rekey bugs #844 and
// #845 show what happens without such a nonce); the operator-set hash binds it to the set that
// is counting; the expiry and the proposer are what the operator agreed to. There is exactly one
// accepted text for a set of fields: parse_statement rejects anything format_statement would not
// have written, so two different byte strings can never mean the same ceremony.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "kekd/common/error.h"
#include "kekd/common/time.h"
#include "kekd/quorum/action.h"
#include "kekd/quorum/operator_set.h"

namespace kekd::quorum {

inline constexpr std::size_t kMaxStatementBytes = 64 * 1024;
inline constexpr std::size_t kMaxPrincipalLength = 128;

struct Statement {
  std::string id;  // 32 lowercase hex digits (128 random bits)
  Action action = Action::kCreateKey;
  std::string key;                           // empty for set-operators
  std::optional<std::uint32_t> version;      // the four version state changes
  std::optional<UnixMillis> destroy_after;   // schedule-destroy-version; whole seconds
  std::optional<OperatorSet> new_operators;  // set-operators: the proposed members and their M
  std::string operator_set;                  // "sha256:<hex>": the set that must approve
  std::uint32_t threshold = 0;               // its M
  std::string proposed_by;                   // the admin principal
  UnixMillis proposed_at = 0;                // whole seconds
  UnixMillis expires_at = 0;                 // whole seconds

  bool operator==(const Statement&) const = default;
};

// The statement text. kInvalidArgument if a field is malformed, present for an action that does
// not use it or missing for one that does, or if a time is not a whole second.
Result<std::string> format_statement(const Statement& statement);

// Inverse of format_statement; kInvalidArgument for any text it would not have written.
Result<Statement> parse_statement(std::string_view text);

// 32 lowercase hex digits.
Status validate_ceremony_id(std::string_view id);

// 1 to 128 printable ASCII characters without spaces: one token on a statement line.
Status validate_principal(std::string_view principal);

// "sha256:" and 64 lowercase hex digits.
Status validate_set_hash(std::string_view hash);

}  // namespace kekd::quorum
