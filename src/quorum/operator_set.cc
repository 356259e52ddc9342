#include "kekd/quorum/operator_set.h"

#include <botan/base64.h>
#include <botan/hash.h>

#include <algorithm>
#include <charconv>
#include <exception>
#include <set>

#include "text_lines.h"

namespace kekd::quorum {
namespace {

constexpr std::string_view kHeader = "kekd operator-set v1";
// Header, threshold and kMaxOperators lines of at most ~200 bytes each.
constexpr std::size_t kMaxCanonicalBytes = 32 * 1024;

Error invalid_set(std::string why) {
  return Error(Code::kInvalidArgument, "operator set: " + std::move(why));
}

}  // namespace

std::string sha256_tag(std::string_view text) {
  auto sha256 = Botan::HashFunction::create_or_throw("SHA-256");
  sha256->update(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
  return "sha256:" + to_hex(sha256->final_stdvec());
}

std::string operator_line_value(const Operator& op) {
  std::string value = op.name;
  value += ' ';
  value += algorithm_name(op.algorithm);
  value += ' ';
  value += Botan::base64_encode(op.spki_der.data(), op.spki_der.size());
  return value;
}

Result<Operator> parse_operator_line_value(std::string_view value) {
  std::size_t first = value.find(' ');
  std::size_t second = first == std::string_view::npos ? first : value.find(' ', first + 1);
  if (second == std::string_view::npos || value.find(' ', second + 1) != std::string_view::npos) {
    return Error(Code::kInvalidArgument,
                 "an operator line is '<name> <algorithm> <base64 SubjectPublicKeyInfo>'");
  }
  std::string_view name = value.substr(0, first);
  std::string_view algorithm = value.substr(first + 1, second - first - 1);
  std::string_view base64 = value.substr(second + 1);
  std::optional<Algorithm> parsed_algorithm = parse_algorithm(algorithm);
  if (!parsed_algorithm) {
    return Error(Code::kInvalidArgument, "operator '" + std::string(name) +
                                             "': unknown algorithm; expected ed25519 or "
                                             "ecdsa-p256");
  }
  Bytes der;
  try {
    Botan::secure_vector<std::uint8_t> decoded =
        Botan::base64_decode(std::string(base64), /*ignore_ws=*/false);
    der.assign(decoded.begin(), decoded.end());
  } catch (const std::exception&) {
    return Error(Code::kInvalidArgument,
                 "operator '" + std::string(name) + "': the public key is not valid base64");
  }
  // One encoding only: padding as standard base64 writes it, nothing else accepted.
  if (Botan::base64_encode(der.data(), der.size()) != base64) {
    return Error(Code::kInvalidArgument,
                 "operator '" + std::string(name) + "': the public key is not canonical base64");
  }
  KEKD_ASSIGN_OR_RETURN(Operator op, operator_from_der(std::string(name), der));
  if (op.algorithm != *parsed_algorithm) {
    return Error(Code::kInvalidArgument, "operator '" + op.name + "': the key is " +
                                             std::string(algorithm_name(op.algorithm)) + ", not " +
                                             std::string(algorithm));
  }
  return op;
}

std::string OperatorSet::canonical() const {
  std::string text(kHeader);
  text += "\nthreshold: " + std::to_string(threshold) + "\n";
  for (const Operator& op : operators) {
    text += "operator: " + operator_line_value(op) + "\n";
  }
  return text;
}

std::string OperatorSet::hash() const { return sha256_tag(canonical()); }

const Operator* OperatorSet::find(std::string_view name) const {
  for (const Operator& op : operators) {
    if (op.name == name) {
      return &op;
    }
  }
  return nullptr;
}

Result<OperatorSet> make_operator_set(std::vector<Operator> operators, std::uint32_t threshold,
                                      bool force_single_approver) {
  const std::size_t n = operators.size();
  if (n == 0) {
    return invalid_set("needs at least one operator");
  }
  if (n > kMaxOperators) {
    return invalid_set("at most " + std::to_string(kMaxOperators) + " operators");
  }
  std::set<std::string, std::less<>> names;
  // Keys compared by their fingerprint: GCC 12 at -O3 raises a false -Wstringop-overread on
  // std::set<std::vector<uint8_t>>, and the fingerprint is what operators compare anyway.
  std::set<std::string, std::less<>> keys;
  for (const Operator& op : operators) {
    // Re-derived from the key itself: an Operator built by hand must not slip past the rules
    // parse_operator enforces.
    KEKD_ASSIGN_OR_RETURN(Operator checked, operator_from_der(op.name, op.spki_der));
    if (checked.algorithm != op.algorithm) {
      return invalid_set("operator '" + op.name + "' has the wrong algorithm for its key");
    }
    if (!names.insert(op.name).second) {
      return invalid_set("operator name '" + op.name + "' appears twice");
    }
    if (!keys.insert(op.fingerprint()).second) {
      return invalid_set("the public key of operator '" + op.name +
                         "' is also another operator's; each operator needs a key of their own");
    }
  }
  if (threshold < 1 || threshold > n) {
    return invalid_set("the threshold must be between 1 and the number of operators (" +
                       std::to_string(n) + "), not " + std::to_string(threshold));
  }
  if (threshold == 1 && n > 1 && !force_single_approver) {
    return invalid_set("threshold 1 with " + std::to_string(n) +
                       " operators lets any one of them act alone; force it explicitly if that is "
                       "intended");
  }
  std::sort(operators.begin(), operators.end(),
            [](const Operator& a, const Operator& b) { return a.name < b.name; });
  return OperatorSet{std::move(operators), threshold};
}

Result<OperatorSet> parse_operator_set(std::string_view canonical) {
  if (canonical.size() > kMaxCanonicalBytes) {
    return invalid_set("the text is too long");
  }
  KEKD_ASSIGN_OR_RETURN(std::vector<std::string_view> lines, split_lines(canonical));
  if (lines.size() < 3 || lines[0] != kHeader) {
    return invalid_set("expected '" + std::string(kHeader) +
                       "', a threshold line and at least one operator line");
  }
  KEKD_ASSIGN_OR_RETURN(std::string_view threshold_text, field_value(lines[1], "threshold"));
  KEKD_ASSIGN_OR_RETURN(std::uint32_t threshold, parse_positive(threshold_text, "threshold"));
  std::vector<Operator> operators;
  for (std::size_t i = 2; i < lines.size(); ++i) {
    if (operators.size() == kMaxOperators) {
      return invalid_set("at most " + std::to_string(kMaxOperators) + " operators");
    }
    KEKD_ASSIGN_OR_RETURN(std::string_view value, field_value(lines[i], "operator"));
    KEKD_ASSIGN_OR_RETURN(Operator op, parse_operator_line_value(value));
    operators.push_back(std::move(op));
  }
  KEKD_ASSIGN_OR_RETURN(OperatorSet set, make_operator_set(std::move(operators), threshold,
                                                           /*force_single_approver=*/true));
  // Whatever else differs (order, leading zeros, spacing) is caught here: the one canonical form.
  if (set.canonical() != canonical) {
    return invalid_set("the text is not in canonical form");
  }
  return set;
}

}  // namespace kekd::quorum
