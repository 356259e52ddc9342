// A sealed file (include/kekd/seal/sealed_file.h, docs/sealed-file.md) as `kekctl open` reads it:
// read_header, then open_stream over the rest under a fixed data key. Properties:
//  - a header that does not read is kInvalidArgument; an accepted header is valid (a key name,
//    1..6144 wrapped bytes, a chunk size in range) and its encoding is exactly the bytes read;
//  - opening fails only with kInvalidCiphertext (never another code, never a crash);
//  - a file that opens is the one seal_stream writes for that plaintext, header and key, byte for
//    byte: sealing is deterministic (STREAM nonces), so nothing else may authenticate. The seeds
//    (make_seeds.py, an independent implementation) are sealed under kDataKey.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "fuzz_check.h"
#include "kekd/keys/key_name.h"
#include "kekd/seal/sealed_file.h"

using namespace kekd;

namespace {

// bytes 0x00, 0x01, ..., 0x1f: the key make_seeds.py seals the seed files under.
SecretBytes data_key() {
  SecretBytes key(32);
  for (std::size_t i = 0; i < key.size(); ++i) key[i] = static_cast<std::uint8_t>(i);
  return key;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  std::istringstream in(input);
  Result<seal::SealedHeader> header = seal::read_header(in);
  if (!header.ok()) {
    FUZZ_CHECK(header.error().code() == Code::kInvalidArgument);
    return 0;
  }
  FUZZ_CHECK(keys::validate_key_name(header->key).ok());
  FUZZ_CHECK(!header->wrapped_key.empty() &&
             header->wrapped_key.size() <= seal::kMaxWrappedKeySize);
  FUZZ_CHECK(header->chunk_size >= 16 && header->chunk_size <= seal::kMaxChunkSize);
  const Bytes encoded = seal::encode_header(*header);
  FUZZ_CHECK(encoded.size() <= size && std::equal(encoded.begin(), encoded.end(), data));
  FUZZ_CHECK(in.tellg() == static_cast<std::streamoff>(encoded.size()));

  // A chunk buffer is allocated at the header's chunk size; past 64 KiB that is the fuzzer's
  // memory, not a finding: the bound itself (kMaxChunkSize) is checked above.
  if (header->chunk_size > 64 * 1024) return 0;
  const SecretBytes key = data_key();
  std::ostringstream plaintext;
  Status opened = seal::open_stream(in, plaintext, *header, key);
  if (!opened.ok()) {
    FUZZ_CHECK(opened.error().code() == Code::kInvalidCiphertext);
    return 0;
  }
  std::istringstream again(plaintext.str());
  std::ostringstream resealed;
  FUZZ_CHECK(seal::seal_stream(again, resealed, *header, key).ok());
  FUZZ_CHECK(resealed.str() == input);
  return 0;
}
