// The encryption context: a map of UTF-8 strings bound to a ciphertext (as in AWS KMS). Unwrap
// and rewrap must be given the same context the wrap was.
//
// Canonical form, whose SHA-256 is the first 32 bytes of every inner payload (DESIGN §4):
//   for each pair, sorted by key bytes:  u32 BE len(key) || key || u32 BE len(value) || value
// No pairs give the empty string.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>

#include "kekd/common/bytes.h"

namespace kekd::keys {

// std::map orders std::string keys by unsigned byte value (char_traits<char>::lt compares as
// unsigned char), which is exactly the canonical order.
using EncryptionContext = std::map<std::string, std::string>;

using ContextDigest = std::array<std::uint8_t, 32>;

Bytes canonical_context(const EncryptionContext& context);
ContextDigest context_digest(const EncryptionContext& context);

}  // namespace kekd::keys
