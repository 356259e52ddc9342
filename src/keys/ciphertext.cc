#include "kekd/keys/ciphertext.h"

#include "kekd/keys/inner_payload.h"
#include "kekd/keys/key_name.h"

namespace kekd::keys {
namespace {

// RFC 5649 output is the padded input plus an 8-byte integrity block.
constexpr std::size_t kMinWrapped = kMinPayload + 8;
constexpr std::size_t kMaxWrapped = kMaxPayload + 8;

}  // namespace

Error invalid_ciphertext() {
  return Error(Code::kInvalidCiphertext,
               "ciphertext is invalid or does not match the key or context");
}

Bytes encode_ciphertext(const Ciphertext& c) {
  Bytes out;
  out.reserve(2 + c.key_name.size() + 4 + c.wrapped.size());
  out.push_back(kCiphertextFormat);
  out.push_back(static_cast<std::uint8_t>(c.key_name.size()));
  out.insert(out.end(), c.key_name.begin(), c.key_name.end());
  out.push_back(static_cast<std::uint8_t>(c.version >> 24));
  out.push_back(static_cast<std::uint8_t>(c.version >> 16));
  out.push_back(static_cast<std::uint8_t>(c.version >> 8));
  out.push_back(static_cast<std::uint8_t>(c.version));
  out.insert(out.end(), c.wrapped.begin(), c.wrapped.end());
  return out;
}

Result<Ciphertext> parse_ciphertext(ByteView bytes) {
  if (bytes.size() < 2 || bytes[0] != kCiphertextFormat) {
    return invalid_ciphertext();
  }
  const std::size_t name_length = bytes[1];
  if (name_length == 0 || name_length > kMaxKeyNameLength) {
    return invalid_ciphertext();
  }
  // Header: format, L, name, version. Check the whole header fits before reading any of it.
  const std::size_t header = 2 + name_length + 4;
  if (bytes.size() < header) {
    return invalid_ciphertext();
  }
  Ciphertext c;
  c.key_name.assign(reinterpret_cast<const char*>(bytes.data() + 2), name_length);
  if (!validate_key_name(c.key_name).ok()) {
    return invalid_ciphertext();
  }
  const std::uint8_t* v = bytes.data() + 2 + name_length;
  c.version = (std::uint32_t{v[0]} << 24) | (std::uint32_t{v[1]} << 16) |
              (std::uint32_t{v[2]} << 8) | std::uint32_t{v[3]};
  if (c.version == 0) {
    return invalid_ciphertext();
  }
  const std::size_t wrapped_length = bytes.size() - header;
  if (wrapped_length < kMinWrapped || wrapped_length > kMaxWrapped || wrapped_length % 8 != 0) {
    return invalid_ciphertext();
  }
  c.wrapped.assign(bytes.begin() + header, bytes.end());
  return c;
}

}  // namespace kekd::keys
