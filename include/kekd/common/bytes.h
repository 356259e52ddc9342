// Byte containers. Anything secret (a DEK, an inner payload, a PIN, a client secret) lives in
// SecretBytes, whose allocator zeroes memory on release; public bytes (ciphertexts, ids) in Bytes.
#pragma once

#include <botan/secmem.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace kekd {

using Bytes = std::vector<std::uint8_t>;
using SecretBytes = Botan::secure_vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;

std::string to_hex(ByteView bytes);

}  // namespace kekd
