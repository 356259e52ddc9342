#include "kekd/keys/key_name.h"

#include <charconv>

namespace kekd::keys {
namespace {

constexpr std::string_view kLabelPrefix = "kekd:";

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

}  // namespace

Status validate_key_name(std::string_view name) {
  bool valid = !name.empty() && name.size() <= kMaxKeyNameLength && is_lower_alnum(name[0]);
  for (std::size_t i = 1; valid && i < name.size(); ++i) {
    valid = is_lower_alnum(name[i]) || name[i] == '_' || name[i] == '-';
  }
  if (!valid) {
    return Error(Code::kInvalidArgument,
                 "a key name is 1 to 64 characters from a-z, 0-9, '_' and '-', starting with a "
                 "letter or digit");
  }
  return ok_status();
}

std::string kek_label(std::string_view name, std::uint32_t version) {
  std::string label(kLabelPrefix);
  label += name;
  label += ':';
  label += std::to_string(version);
  return label;
}

std::optional<ParsedLabel> parse_kek_label(std::string_view label) {
  if (!label.starts_with(kLabelPrefix)) {
    return std::nullopt;
  }
  label.remove_prefix(kLabelPrefix.size());
  std::size_t colon = label.rfind(':');
  if (colon == std::string_view::npos) {
    return std::nullopt;
  }
  std::string_view name = label.substr(0, colon);
  std::string_view digits = label.substr(colon + 1);
  std::uint32_t version = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), version);
  if (ec != std::errc() || end != digits.data() + digits.size() || version == 0 ||
      digits[0] == '0' || !validate_key_name(name).ok()) {
    return std::nullopt;
  }
  return ParsedLabel{std::string(name), version};
}

}  // namespace kekd::keys
