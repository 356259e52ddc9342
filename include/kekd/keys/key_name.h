// Key names and the token labels of their versions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "kekd/common/error.h"

namespace kekd::keys {

inline constexpr std::size_t kMaxKeyNameLength = 64;

// A key name is [a-z0-9][a-z0-9_-]{0,63}: safe in a URL path, a token label and a file name.
Status validate_key_name(std::string_view name);

// The token label of a KEK version: "kekd:<name>:<version>". Labels are how the token, which
// holds the key material, and the store, which holds the history, are reconciled.
std::string kek_label(std::string_view name, std::uint32_t version);

struct ParsedLabel {
  std::string name;
  std::uint32_t version;
};

// Inverse of kek_label; std::nullopt for any label kekd would not have written.
std::optional<ParsedLabel> parse_kek_label(std::string_view label);

}  // namespace kekd::keys
