// The sealed-file format of docs/sealed-file.md. Every length read from a file is checked before
// it is used; nothing of the header is trusted until a chunk has authenticated it as associated
// data, and the caller learns about a bad file only through kInvalidArgument (not a sealed file)
// or kInvalidCiphertext (tampered, truncated or the wrong key).
#include "kekd/seal/sealed_file.h"

#include <botan/aead.h>
#include <botan/exceptn.h>

#include <algorithm>
#include <array>
#include <memory>

#include "kekd/keys/key_name.h"

namespace kekd::seal {
namespace {

constexpr std::array<std::uint8_t, 8> kMagic = {'K', 'E', 'K', 'D', 'S', 'E', 'A', 'L'};
constexpr std::uint8_t kVersion = 1;
constexpr std::uint8_t kFlagContextBound = 0x01;
constexpr std::size_t kTagSize = 16;
constexpr std::size_t kNonceSize = 12;
constexpr std::size_t kDataKeySize = 32;
// The smallest chunk a reader accepts: small enough for tests to cross chunk boundaries cheaply,
// large enough that a hostile header cannot make the per-chunk overhead dominate.
constexpr std::uint32_t kMinChunkSize = 16;

Error not_sealed(std::string why) {
  return Error(Code::kInvalidArgument, "not a kekd sealed file: " + why);
}

Error tampered(std::uint64_t chunk) {
  return Error(Code::kInvalidCiphertext,
               "the sealed file is corrupt, truncated or was tampered with (chunk " +
                   std::to_string(chunk) + " does not authenticate)");
}

Error io_error(const char* what) {
  return Error(Code::kUnavailable, std::string("cannot ") + what + " the file");
}

// STREAM nonce: the chunk index (big-endian, 88 bits) and a last-chunk flag. The data key is fresh
// for every file, so index and flag alone make every nonce unique under that key.
std::array<std::uint8_t, kNonceSize> chunk_nonce(std::uint64_t index, bool last) {
  std::array<std::uint8_t, kNonceSize> nonce{};
  for (int i = 0; i < 8; ++i) {
    nonce[10 - i] = static_cast<std::uint8_t>(index >> (8 * i));
  }
  nonce[11] = last ? 1 : 0;
  return nonce;
}

// Reads up to n bytes; fewer only at the end of the stream.
Result<std::size_t> read_up_to(std::istream& in, std::uint8_t* out, std::size_t n) {
  in.read(reinterpret_cast<char*>(out), static_cast<std::streamsize>(n));
  if (in.bad()) {
    return io_error("read");
  }
  return static_cast<std::size_t>(in.gcount());
}

bool at_end(std::istream& in) { return in.peek() == std::char_traits<char>::eof(); }

Status write_all(std::ostream& out, const std::uint8_t* data, std::size_t n) {
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(n));
  if (!out) {
    return io_error("write");
  }
  return ok_status();
}

Status check_data_key(const SecretBytes& data_key) {
  if (data_key.size() != kDataKeySize) {
    return Error(Code::kInvalidArgument, "a sealed file's data key is 32 bytes (AES-256)");
  }
  return ok_status();
}

Status check_header(const SealedHeader& h) {
  if (auto s = keys::validate_key_name(h.key); !s.ok()) {
    return s;
  }
  if (h.wrapped_key.empty() || h.wrapped_key.size() > kMaxWrappedKeySize) {
    return Error(Code::kInvalidArgument,
                 "wrapped data key of " + std::to_string(h.wrapped_key.size()) + " bytes (1 to " +
                     std::to_string(kMaxWrappedKeySize) + ")");
  }
  if (h.chunk_size < kMinChunkSize || h.chunk_size > kMaxChunkSize) {
    return Error(Code::kInvalidArgument,
                 "chunk size " + std::to_string(h.chunk_size) + " out of range");
  }
  return ok_status();
}

std::unique_ptr<Botan::AEAD_Mode> gcm(const SecretBytes& data_key, Botan::Cipher_Dir direction) {
  auto mode = Botan::AEAD_Mode::create_or_throw("AES-256/GCM", direction);
  mode->set_key(data_key);
  return mode;
}

}  // namespace

Bytes encode_header(const SealedHeader& h) {
  Bytes out(kMagic.begin(), kMagic.end());
  out.push_back(kVersion);
  out.push_back(h.context_bound ? kFlagContextBound : 0);
  for (int shift = 24; shift >= 0; shift -= 8) {
    out.push_back(static_cast<std::uint8_t>(h.chunk_size >> shift));
  }
  out.push_back(static_cast<std::uint8_t>(h.key.size()));
  out.insert(out.end(), h.key.begin(), h.key.end());
  out.push_back(static_cast<std::uint8_t>(h.wrapped_key.size() >> 8));
  out.push_back(static_cast<std::uint8_t>(h.wrapped_key.size()));
  out.insert(out.end(), h.wrapped_key.begin(), h.wrapped_key.end());
  return out;
}

Result<SealedHeader> read_header(std::istream& in) {
  std::array<std::uint8_t, 15> fixed{};  // magic, version, flags, chunk size, key name length
  KEKD_ASSIGN_OR_RETURN(std::size_t got, read_up_to(in, fixed.data(), fixed.size()));
  if (got < kMagic.size() || !std::equal(kMagic.begin(), kMagic.end(), fixed.begin())) {
    return not_sealed("the magic bytes KEKDSEAL are missing");
  }
  if (got < fixed.size()) {
    return not_sealed("the header is truncated");
  }
  if (fixed[8] != kVersion) {
    return Error(Code::kInvalidArgument,
                 "sealed file format version " + std::to_string(fixed[8]) +
                     " is not supported by this kekctl (it reads version 1)");
  }
  if ((fixed[9] & ~kFlagContextBound) != 0) {
    return not_sealed("unknown header flags");
  }
  SealedHeader h;
  h.context_bound = (fixed[9] & kFlagContextBound) != 0;
  h.chunk_size = (std::uint32_t{fixed[10]} << 24) | (std::uint32_t{fixed[11]} << 16) |
                 (std::uint32_t{fixed[12]} << 8) | std::uint32_t{fixed[13]};
  h.key.resize(fixed[14]);
  KEKD_ASSIGN_OR_RETURN(
      got, read_up_to(in, reinterpret_cast<std::uint8_t*>(h.key.data()), h.key.size()));
  std::array<std::uint8_t, 2> length{};
  KEKD_ASSIGN_OR_RETURN(std::size_t got_length, read_up_to(in, length.data(), length.size()));
  if (got != h.key.size() || got_length != length.size()) {
    return not_sealed("the header is truncated");
  }
  h.wrapped_key.resize((std::size_t{length[0]} << 8) | length[1]);
  if (h.wrapped_key.size() > kMaxWrappedKeySize) {
    return not_sealed("the wrapped data key is too long");
  }
  KEKD_ASSIGN_OR_RETURN(got, read_up_to(in, h.wrapped_key.data(), h.wrapped_key.size()));
  if (got != h.wrapped_key.size()) {
    return not_sealed("the header is truncated");
  }
  if (auto s = check_header(h); !s.ok()) {
    return not_sealed(s.error().message());
  }
  return h;
}

namespace {

// The chunk loop of both directions: read a chunk (plus its tag when opening), decide whether it
// is the last one, seal or open it under its STREAM nonce, write it.
Status process_chunks(std::istream& in, std::ostream& out, const SealedHeader& header,
                      const SecretBytes& data_key, Botan::Cipher_Dir direction,
                      const Progress& progress) {
  const Bytes aad = encode_header(header);
  auto mode = gcm(data_key, direction);
  const bool opening = direction == Botan::DECRYPTION;
  const std::size_t chunk = std::size_t{header.chunk_size} + (opening ? kTagSize : 0);
  SecretBytes buffer;
  buffer.reserve(header.chunk_size + kTagSize);
  std::uint64_t done = 0;
  for (std::uint64_t index = 0;; ++index) {
    buffer.resize(chunk);
    KEKD_ASSIGN_OR_RETURN(std::size_t got, read_up_to(in, buffer.data(), chunk));
    if (opening && got < kTagSize) {
      return tampered(index);
    }
    buffer.resize(got);
    // A chunk is the last one when the input ends with it; a file of an exact multiple of the
    // chunk size therefore ends with a full chunk, and an empty file is one empty last chunk.
    const bool last = got < chunk || at_end(in);
    const auto nonce = chunk_nonce(index, last);
    mode->set_associated_data(aad.data(), aad.size());
    mode->start(nonce.data(), nonce.size());
    try {
      mode->finish(buffer);
    } catch (const Botan::Invalid_Authentication_Tag&) {
      return tampered(index);
    }
    KEKD_RETURN_IF_ERROR(write_all(out, buffer.data(), buffer.size()));
    done += opening ? buffer.size() : got;
    if (progress) {
      progress(done);
    }
    if (last) {
      break;
    }
  }
  out.flush();
  if (!out) {
    return io_error("write");
  }
  return ok_status();
}

}  // namespace

Status seal_stream(std::istream& in, std::ostream& out, const SealedHeader& header,
                   const SecretBytes& data_key, const Progress& progress) {
  // Nothing is written, not even the header, when the inputs are refused.
  KEKD_RETURN_IF_ERROR(check_data_key(data_key));
  KEKD_RETURN_IF_ERROR(check_header(header));
  const Bytes head = encode_header(header);
  KEKD_RETURN_IF_ERROR(write_all(out, head.data(), head.size()));
  return process_chunks(in, out, header, data_key, Botan::ENCRYPTION, progress);
}

Status open_stream(std::istream& in, std::ostream& out, const SealedHeader& header,
                   const SecretBytes& data_key, const Progress& progress) {
  KEKD_RETURN_IF_ERROR(check_data_key(data_key));
  KEKD_RETURN_IF_ERROR(check_header(header));
  return process_chunks(in, out, header, data_key, Botan::DECRYPTION, progress);
}

}  // namespace kekd::seal
