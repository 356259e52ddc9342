#include "text_lines.h"

#include <charconv>
#include <string>

namespace kekd::quorum {

Result<std::vector<std::string_view>> split_lines(std::string_view text) {
  if (text.empty() || text.back() != '\n') {
    return Error(Code::kInvalidArgument, "the text must end with a line feed");
  }
  for (char c : text) {
    if (c != '\n' && (c < 0x20 || c > 0x7e)) {
      return Error(Code::kInvalidArgument,
                   "the text may hold only printable ASCII and line feeds (no CR, tab or "
                   "control characters)");
    }
  }
  std::vector<std::string_view> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);  // found: the text ends with '\n'
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

Result<std::string_view> field_value(std::string_view line, std::string_view name) {
  if (line.size() <= name.size() + 2 || !line.starts_with(name) ||
      line.substr(name.size(), 2) != ": ") {
    return Error(Code::kInvalidArgument, "expected a line '" + std::string(name) +
                                             ": <value>', found '" +
                                             std::string(line.substr(0, 80)) + "'");
  }
  return line.substr(name.size() + 2);
}

Result<std::uint32_t> parse_positive(std::string_view text, std::string_view what) {
  std::uint32_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || text[0] == '0' || ec != std::errc() || end != text.data() + text.size()) {
    return Error(Code::kInvalidArgument,
                 std::string(what) + " must be a whole number from 1, without leading zeros");
  }
  return value;
}

}  // namespace kekd::quorum
