// Line-level reading of kekd's signed texts (statements, operator sets; docs/ceremony-formats.md).
//
// These helpers only take texts apart; each parser then rebuilds the canonical text from what it
// read and compares bytes, so strictness does not depend on every rule being checked here.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "kekd/common/error.h"

namespace kekd::quorum {

// The lines of a text that is printable ASCII and LF only and ends with LF, without their LFs.
// Anything else (CR, TAB, NUL, UTF-8 beyond ASCII, a missing final LF) is kInvalidArgument.
Result<std::vector<std::string_view>> split_lines(std::string_view text);

// The value of a "<name>: <value>" line; kInvalidArgument if the line is another field or the
// value is empty.
Result<std::string_view> field_value(std::string_view line, std::string_view name);

// A decimal number 1..2^32-1 without sign or leading zeros.
Result<std::uint32_t> parse_positive(std::string_view text, std::string_view what);

}  // namespace kekd::quorum
