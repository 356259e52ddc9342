// The operator set: N operators and the threshold M of them that must approve a ceremony.
//
// Security model (DESIGN §5):
// - What operators approve names the set that must approve it by hash (`operator-set:` in the
//   statement), so an approval can never be counted against a set it was not made for.
// - The hash is over one canonical text (docs/ceremony-formats.md), which anyone can rebuild and
//   hash with standard tools:
//
//     kekd operator-set v1
//     threshold: 2
//     operator: alice ed25519 MCowBQYDK2VwAyEA...
//     operator: bob ecdsa-p256 MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE...
//
//   LF line endings and a final LF; operators sorted by name (byte order); the last field is the
//   standard base64 (with padding) of the DER SubjectPublicKeyInfo.
// - Rules: 1 <= M <= N; names unique; a public key at most once (one person, one vote); M = 1
//   with N > 1 lets anyone act alone and is refused unless explicitly forced.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kekd/common/error.h"
#include "kekd/quorum/operator.h"

namespace kekd::quorum {

// A bound on N, so that a set (and a set-operators statement) stays a page a person can read.
inline constexpr std::size_t kMaxOperators = 64;

struct OperatorSet {
  std::vector<Operator> operators;  // sorted by name; names and keys unique
  std::uint32_t threshold = 0;

  // The canonical text above.
  std::string canonical() const;
  // "sha256:<lowercase hex of SHA-256 of canonical()>".
  std::string hash() const;
  // The operator with this name, or nullptr.
  const Operator* find(std::string_view name) const;

  bool operator==(const OperatorSet&) const = default;
};

// Checks the rules above and sorts the operators by name. kInvalidArgument naming the rule broken.
Result<OperatorSet> make_operator_set(std::vector<Operator> operators, std::uint32_t threshold,
                                      bool force_single_approver);

// Inverse of OperatorSet::canonical(), strict: anything but the exact canonical text of a valid
// set is kInvalidArgument. A stored M = 1 with N > 1 is accepted: it was forced when created.
Result<OperatorSet> parse_operator_set(std::string_view canonical);

// "<name> <algorithm> <base64 SPKI>": the value of one `operator:` line, in the canonical set and
// in set-operators statements alike.
std::string operator_line_value(const Operator& op);
Result<Operator> parse_operator_line_value(std::string_view value);

// "sha256:<hex of SHA-256 of text>".
std::string sha256_tag(std::string_view text);

}  // namespace kekd::quorum
