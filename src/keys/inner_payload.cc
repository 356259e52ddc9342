#include "kekd/keys/inner_payload.h"

#include <botan/mem_ops.h>

#include "kekd/keys/ciphertext.h"

namespace kekd::keys {
namespace {

constexpr std::size_t kDigestBytes = 32;
constexpr std::size_t kFrameBytes = kDigestBytes + 2;

std::size_t padded(std::size_t n) { return (n + 7) / 8 * 8; }

}  // namespace

Result<SecretBytes> build_payload(const ContextDigest& digest, ByteView plaintext) {
  if (plaintext.empty() || plaintext.size() > kMaxPlaintext) {
    return Error(Code::kInvalidArgument, "plaintext must be 1 to 4096 bytes");
  }
  SecretBytes payload(padded(kFrameBytes + plaintext.size()), 0);
  std::copy(digest.begin(), digest.end(), payload.begin());
  payload[kDigestBytes] = static_cast<std::uint8_t>(plaintext.size() >> 8);
  payload[kDigestBytes + 1] = static_cast<std::uint8_t>(plaintext.size());
  std::copy(plaintext.begin(), plaintext.end(), payload.begin() + kFrameBytes);
  return payload;
}

Result<SecretBytes> open_payload(ByteView payload, const ContextDigest& expected) {
  if (payload.size() < kMinPayload || payload.size() > kMaxPayload || payload.size() % 8 != 0) {
    return invalid_ciphertext();
  }
  // Compare the digest in constant time, and decide only after every check has run, so that the
  // time taken does not say which check failed.
  bool ok = Botan::constant_time_compare(payload.data(), expected.data(), kDigestBytes);
  const std::size_t n = (std::size_t{payload[kDigestBytes]} << 8) | payload[kDigestBytes + 1];
  ok = ok && n >= 1 && n <= kMaxPlaintext && padded(kFrameBytes + n) == payload.size();
  if (!ok) {
    return invalid_ciphertext();
  }
  std::uint8_t padding = 0;
  for (std::size_t i = kFrameBytes + n; i < payload.size(); ++i) {
    padding |= payload[i];
  }
  if (padding != 0) {
    return invalid_ciphertext();
  }
  return SecretBytes(payload.begin() + kFrameBytes, payload.begin() + kFrameBytes + n);
}

}  // namespace kekd::keys
