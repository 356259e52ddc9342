// The ciphertext that clients store next to their data (DESIGN §4; docs/ciphertext.md).
//
//   byte 0        format version, 0x01
//   byte 1        L, the length of the key name, 1..64
//   bytes 2..     the key name, L bytes of [a-z0-9_-]
//   next 4 bytes  key version, unsigned big-endian, >= 1
//   rest          C_WrapKey(CKM_AES_KEY_WRAP_PAD, KEK version) of the inner payload
//                 (inner_payload.h): a multiple of 8 bytes, 48..4144
//
// Everything a client sends is untrusted: parse_ciphertext checks every length before it slices,
// and every structural failure is the one kInvalidCiphertext error.
#pragma once

#include <cstdint>
#include <string>

#include "kekd/common/bytes.h"
#include "kekd/common/error.h"

namespace kekd::keys {

inline constexpr std::uint8_t kCiphertextFormat = 0x01;

struct Ciphertext {
  std::string key_name;
  std::uint32_t version = 0;
  Bytes wrapped;  // the RFC 5649 output
};

Bytes encode_ciphertext(const Ciphertext& ciphertext);
Result<Ciphertext> parse_ciphertext(ByteView bytes);

// The one error for every ciphertext that does not open: malformed, tampered, made under another
// key, or given the wrong context. Telling them apart would help an attacker, not a client.
Error invalid_ciphertext();

}  // namespace kekd::keys
