// parse_ciphertext (include/kekd/keys/ciphertext.h) on arbitrary bytes: what a client sends to
// unwrap and rewrap, base64-decoded. Properties:
//  - a refusal is always the one kInvalidCiphertext error (nothing else is learned from it);
//  - an accepted ciphertext has the documented shape (a valid key name, version >= 1, a wrapped
//    part of 48..4144 bytes in multiples of 8) and encodes back to exactly the input, so there
//    is one byte string per ciphertext.
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "fuzz_check.h"
#include "kekd/keys/ciphertext.h"
#include "kekd/keys/key_name.h"

using namespace kekd;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const ByteView input(data, size);
  Result<keys::Ciphertext> parsed = keys::parse_ciphertext(input);
  if (!parsed.ok()) {
    FUZZ_CHECK(parsed.error().code() == Code::kInvalidCiphertext);
    FUZZ_CHECK(parsed.error().message() == keys::invalid_ciphertext().message());
    return 0;
  }
  const keys::Ciphertext& c = *parsed;
  FUZZ_CHECK(keys::validate_key_name(c.key_name).ok());
  FUZZ_CHECK(c.version >= 1);
  FUZZ_CHECK(c.wrapped.size() >= 48 && c.wrapped.size() <= 4144 && c.wrapped.size() % 8 == 0);
  const Bytes encoded = keys::encode_ciphertext(c);
  FUZZ_CHECK(encoded.size() == size && std::equal(encoded.begin(), encoded.end(), data));
  return 0;
}
