// The inner payload: what the HSM wraps (DESIGN §4).
//
//   32 bytes  SHA-256 of the canonical encryption context
//    2 bytes  plaintext length n, unsigned big-endian, 1..4096
//    n bytes  plaintext (the DEK)
//   0..7      zero bytes, so that the payload length is a multiple of 8
//
// Why kekd frames and pads the plaintext itself: SoftHSM 2.6.1 does not follow RFC 5649 for
// lengths that are not a multiple of 8 (it zero-pads first and returns the padded length). With
// this framing the HSM only ever sees multiples of 8, where SoftHSM and compliant HSMs agree.
#pragma once

#include <cstddef>

#include "kekd/common/bytes.h"
#include "kekd/common/error.h"
#include "kekd/keys/encryption_context.h"

namespace kekd::keys {

inline constexpr std::size_t kMaxPlaintext = 4096;
inline constexpr std::size_t kMinPayload = 40;    // 32 + 2 + 1, padded to 8
inline constexpr std::size_t kMaxPayload = 4136;  // 32 + 2 + 4096, padded to 8

// Frames plaintext (1..kMaxPlaintext bytes, else kInvalidArgument) with the context digest.
Result<SecretBytes> build_payload(const ContextDigest& digest, ByteView plaintext);

// Checks the frame and the digest (in constant time) and returns the plaintext. Any mismatch is
// kInvalidCiphertext: a wrong context must look exactly like a tampered ciphertext.
Result<SecretBytes> open_payload(ByteView payload, const ContextDigest& expected);

}  // namespace kekd::keys
