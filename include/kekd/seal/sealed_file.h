// Sealed files (docs/sealed-file.md): the envelope pattern applied to a file. A fresh data key
// from kekd encrypts the file locally with AES-256-GCM in fixed-size chunks; the header carries
// the key name and the wrapped data key, so that `kekctl open` needs only kekd and the file.
//
// Chunks follow the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015): each chunk's
// nonce is its index and a "last chunk" flag, and every chunk authenticates the whole header. So
// chunks cannot be reordered, dropped, truncated at a chunk boundary or appended to, and the
// header cannot be changed, without a chunk failing to authenticate. Memory stays constant: one
// chunk is held at a time, whatever the file's size.
#pragma once

#include <cstdint>
#include <functional>
#include <istream>
#include <ostream>
#include <string>

#include "kekd/common/bytes.h"
#include "kekd/common/error.h"

namespace kekd::seal {

inline constexpr std::uint32_t kDefaultChunkSize = 64 * 1024;
inline constexpr std::uint32_t kMaxChunkSize = 16 * 1024 * 1024;
inline constexpr std::size_t kMaxWrappedKeySize = 6144;

struct SealedHeader {
  std::string key;             // the kekd key whose KEK wrapped the data key
  Bytes wrapped_key;           // kekd's ciphertext of the data key, as returned by datakey
  bool context_bound = false;  // an encryption context is needed to unwrap the data key
  std::uint32_t chunk_size = kDefaultChunkSize;
};

// Called with the number of plaintext bytes processed so far.
using Progress = std::function<void(std::uint64_t)>;

// Encrypts `in` to `out` under `data_key` (32 bytes), writing the header first.
Status seal_stream(std::istream& in, std::ostream& out, const SealedHeader& header,
                   const SecretBytes& data_key, const Progress& progress = {});

// Reads and checks the header of a sealed file (kInvalidArgument if it is not one, or of a
// version this build does not read). Nothing in it is trusted until the first chunk authenticates.
Result<SealedHeader> read_header(std::istream& in);

// Decrypts the chunks that follow the header just read. On kInvalidCiphertext (a chunk failed to
// authenticate, the file was truncated or extended) some plaintext may already have been written:
// the caller writes to a temporary file and removes it on failure.
Status open_stream(std::istream& in, std::ostream& out, const SealedHeader& header,
                   const SecretBytes& data_key, const Progress& progress = {});

// The header's bytes as written (also the associated data of every chunk).
Bytes encode_header(const SealedHeader& header);

}  // namespace kekd::seal
