#include "kekd/quorum/statement.h"

#include <vector>

#include "kekd/keys/key_name.h"
#include "text_lines.h"

namespace kekd::quorum {
namespace {

constexpr std::string_view kHeader = "kekd ceremony v1";
constexpr std::size_t kIdHexDigits = 32;
constexpr std::size_t kHashHexDigits = 64;
// 9999-12-31T23:59:59Z: the last instant with the four-digit year RFC 3339 text needs.
constexpr UnixMillis kLatestTime = 253'402'300'799'000;

Error invalid(std::string why) {
  return Error(Code::kInvalidArgument, "statement: " + std::move(why));
}

bool is_lower_hex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

Status check_time(UnixMillis t, std::string_view field) {
  if (t < 0 || t > kLatestTime || t % 1000 != 0) {
    return invalid(std::string(field) + " must be a whole second between 1970 and 9999");
  }
  return ok_status();
}

// Reads the lines of a statement in their fixed order.
class LineReader {
 public:
  explicit LineReader(std::vector<std::string_view> lines) : lines_(std::move(lines)) {}

  bool next_is(std::string_view field) const {
    return pos_ < lines_.size() && lines_[pos_].starts_with(field) &&
           lines_[pos_].substr(field.size()).starts_with(": ");
  }

  Result<std::string_view> take(std::string_view field) {
    if (pos_ == lines_.size()) {
      return invalid("missing line '" + std::string(field) + ": ...'");
    }
    KEKD_ASSIGN_OR_RETURN(std::string_view value, field_value(lines_[pos_], field));
    ++pos_;
    return value;
  }

  Result<UnixMillis> take_time(std::string_view field) {
    KEKD_ASSIGN_OR_RETURN(std::string_view value, take(field));
    std::optional<UnixMillis> t = parse_rfc3339(value);
    if (!t) {
      return invalid(std::string(field) + " must be a time like 2026-11-23T10:00:00Z");
    }
    return *t;
  }

  Result<std::uint32_t> take_number(std::string_view field) {
    KEKD_ASSIGN_OR_RETURN(std::string_view value, take(field));
    return parse_positive(value, field);
  }

  bool at_end() const { return pos_ == lines_.size(); }

 private:
  std::vector<std::string_view> lines_;
  std::size_t pos_ = 0;
};

Status check_fields(const Statement& s) {
  KEKD_RETURN_IF_ERROR(validate_ceremony_id(s.id));
  const Action a = s.action;
  if (!parse_action(action_name(a))) {
    return invalid("unknown action");
  }
  if (action_has_key(a)) {
    KEKD_RETURN_IF_ERROR(keys::validate_key_name(s.key));
  } else if (!s.key.empty()) {
    return invalid(std::string(action_name(a)) + " takes no key");
  }
  if (action_has_version(a) != s.version.has_value()) {
    return invalid(std::string(action_name(a)) +
                   (s.version ? " takes no version" : " needs a version"));
  }
  if (s.version && *s.version == 0) {
    return invalid("versions start at 1");
  }
  if (action_has_destroy_after(a) != s.destroy_after.has_value()) {
    return invalid(std::string(action_name(a)) +
                   (s.destroy_after ? " takes no destroy-after" : " needs a destroy-after"));
  }
  if (s.destroy_after) {
    KEKD_RETURN_IF_ERROR(check_time(*s.destroy_after, "destroy-after"));
  }
  if ((a == Action::kSetOperators) != s.new_operators.has_value()) {
    return invalid(a == Action::kSetOperators
                       ? "set-operators needs the proposed operators"
                       : std::string(action_name(a)) + " takes no operators");
  }
  KEKD_RETURN_IF_ERROR(validate_set_hash(s.operator_set));
  if (s.threshold == 0) {
    return invalid("threshold must be at least 1");
  }
  KEKD_RETURN_IF_ERROR(validate_principal(s.proposed_by));
  KEKD_RETURN_IF_ERROR(check_time(s.proposed_at, "proposed-at"));
  KEKD_RETURN_IF_ERROR(check_time(s.expires_at, "expires-at"));
  if (s.expires_at <= s.proposed_at) {
    return invalid("expires-at must be after proposed-at");
  }
  return ok_status();
}

}  // namespace

Status validate_ceremony_id(std::string_view id) {
  if (id.size() != kIdHexDigits || !is_lower_hex(id)) {
    return Error(Code::kInvalidArgument, "a ceremony id is 32 lowercase hex digits");
  }
  return ok_status();
}

Status validate_principal(std::string_view principal) {
  bool valid = !principal.empty() && principal.size() <= kMaxPrincipalLength;
  for (std::size_t i = 0; valid && i < principal.size(); ++i) {
    valid = principal[i] > 0x20 && principal[i] < 0x7f;
  }
  if (!valid) {
    return Error(Code::kInvalidArgument,
                 "a principal is 1 to 128 printable ASCII characters without spaces");
  }
  return ok_status();
}

Status validate_set_hash(std::string_view hash) {
  constexpr std::string_view kPrefix = "sha256:";
  if (hash.size() != kPrefix.size() + kHashHexDigits || !hash.starts_with(kPrefix) ||
      !is_lower_hex(hash.substr(kPrefix.size()))) {
    return Error(Code::kInvalidArgument,
                 "an operator-set hash is 'sha256:' and 64 lowercase hex digits");
  }
  return ok_status();
}

Result<std::string> format_statement(const Statement& s) {
  KEKD_RETURN_IF_ERROR(check_fields(s));
  std::string text(kHeader);
  text += "\nid: " + s.id;
  text += "\naction: ";
  text += action_name(s.action);
  if (action_has_key(s.action)) {
    text += "\nkey: " + s.key;
  }
  if (s.version) {
    text += "\nversion: " + std::to_string(*s.version);
  }
  if (s.destroy_after) {
    text += "\ndestroy-after: " + format_rfc3339(*s.destroy_after);
  }
  if (s.new_operators) {
    for (const Operator& op : s.new_operators->operators) {
      text += "\noperator: " + operator_line_value(op);
    }
    text += "\nnew-threshold: " + std::to_string(s.new_operators->threshold);
  }
  text += "\noperator-set: " + s.operator_set;
  text += "\nthreshold: " + std::to_string(s.threshold);
  text += "\nproposed-by: " + s.proposed_by;
  text += "\nproposed-at: " + format_rfc3339(s.proposed_at);
  text += "\nexpires-at: " + format_rfc3339(s.expires_at);
  text += "\n";
  return text;
}

Result<Statement> parse_statement(std::string_view text) {
  if (text.size() > kMaxStatementBytes) {
    return invalid("longer than " + std::to_string(kMaxStatementBytes) + " bytes");
  }
  KEKD_ASSIGN_OR_RETURN(std::vector<std::string_view> lines, split_lines(text));
  if (lines.front() != kHeader) {
    return invalid("the first line must be '" + std::string(kHeader) + "'");
  }
  LineReader in(std::vector<std::string_view>(lines.begin() + 1, lines.end()));
  Statement s;
  KEKD_ASSIGN_OR_RETURN(std::string_view id, in.take("id"));
  s.id = id;
  KEKD_ASSIGN_OR_RETURN(std::string_view action_text, in.take("action"));
  std::optional<Action> action = parse_action(action_text);
  if (!action) {
    return invalid("unknown action '" + std::string(action_text) + "'");
  }
  s.action = *action;
  if (action_has_key(s.action)) {
    KEKD_ASSIGN_OR_RETURN(std::string_view key, in.take("key"));
    s.key = key;
  }
  if (action_has_version(s.action)) {
    KEKD_ASSIGN_OR_RETURN(s.version, in.take_number("version"));
  }
  if (action_has_destroy_after(s.action)) {
    KEKD_ASSIGN_OR_RETURN(s.destroy_after, in.take_time("destroy-after"));
  }
  if (s.action == Action::kSetOperators) {
    std::vector<Operator> operators;
    while (in.next_is("operator")) {
      if (operators.size() == kMaxOperators) {
        return invalid("at most " + std::to_string(kMaxOperators) + " operators");
      }
      KEKD_ASSIGN_OR_RETURN(std::string_view value, in.take("operator"));
      KEKD_ASSIGN_OR_RETURN(Operator op, parse_operator_line_value(value));
      operators.push_back(std::move(op));
    }
    KEKD_ASSIGN_OR_RETURN(std::uint32_t new_threshold, in.take_number("new-threshold"));
    // Forced or not was decided at proposal time; the text only has to describe a valid set.
    KEKD_ASSIGN_OR_RETURN(s.new_operators, make_operator_set(std::move(operators), new_threshold,
                                                             /*force_single_approver=*/true));
  }
  KEKD_ASSIGN_OR_RETURN(std::string_view set_hash, in.take("operator-set"));
  s.operator_set = set_hash;
  KEKD_ASSIGN_OR_RETURN(s.threshold, in.take_number("threshold"));
  KEKD_ASSIGN_OR_RETURN(std::string_view proposed_by, in.take("proposed-by"));
  s.proposed_by = proposed_by;
  KEKD_ASSIGN_OR_RETURN(s.proposed_at, in.take_time("proposed-at"));
  KEKD_ASSIGN_OR_RETURN(s.expires_at, in.take_time("expires-at"));
  if (!in.at_end()) {
    return invalid("unexpected lines after expires-at");
  }
  // The one canonical text: whatever the reading above tolerated (unsorted operators, say) must
  // still come out byte for byte as it went in.
  KEKD_ASSIGN_OR_RETURN(std::string canonical, format_statement(s));
  if (canonical != text) {
    return invalid("not in canonical form");
  }
  return s;
}

}  // namespace kekd::quorum
