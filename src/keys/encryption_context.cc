#include "kekd/keys/encryption_context.h"

#include <botan/hash.h>

namespace kekd::keys {
namespace {

void append_u32_be(Bytes& out, std::size_t n) {
  out.push_back(static_cast<std::uint8_t>(n >> 24));
  out.push_back(static_cast<std::uint8_t>(n >> 16));
  out.push_back(static_cast<std::uint8_t>(n >> 8));
  out.push_back(static_cast<std::uint8_t>(n));
}

void append_field(Bytes& out, const std::string& s) {
  append_u32_be(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

}  // namespace

Bytes canonical_context(const EncryptionContext& context) {
  Bytes out;
  for (const auto& [key, value] : context) {
    append_field(out, key);
    append_field(out, value);
  }
  return out;
}

ContextDigest context_digest(const EncryptionContext& context) {
  auto sha256 = Botan::HashFunction::create_or_throw("SHA-256");
  sha256->update(canonical_context(context));
  ContextDigest digest;
  sha256->final(digest.data());
  return digest;
}

}  // namespace kekd::keys
