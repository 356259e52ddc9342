// Sealed files: round trips across chunk boundaries, and every way a file can be damaged or
// attacked (a flipped bit anywhere, truncation at any length, appended data, reordered or
// dropped chunks, a changed header, the wrong data key) refused, with the right code.
#include <doctest/doctest.h>

#include <botan/auto_rng.h>

#include <sstream>

#include "kekd/seal/sealed_file.h"

using namespace kekd;
using namespace kekd::seal;

namespace {

constexpr std::uint32_t kSmallChunk = 64;  // small, so that tests cross many chunk boundaries

SecretBytes random_key() {
  Botan::AutoSeeded_RNG rng;
  return rng.random_vec(32);
}

std::string random_text(std::size_t n) {
  Botan::AutoSeeded_RNG rng;
  auto bytes = rng.random_vec(n);
  return std::string(bytes.begin(), bytes.end());
}

SealedHeader header(std::uint32_t chunk = kSmallChunk) {
  SealedHeader h;
  h.key = "demo";
  h.wrapped_key = Bytes(60, 0x42);
  h.chunk_size = chunk;
  return h;
}

std::string seal_string(const std::string& plain, const SecretBytes& key,
                        const SealedHeader& h = header()) {
  std::istringstream in(plain);
  std::ostringstream out;
  REQUIRE(seal_stream(in, out, h, key).ok());
  return out.str();
}

// Reads the header and opens the rest; the Error of whichever step fails.
Result<std::string> open_string(const std::string& sealed, const SecretBytes& key) {
  std::istringstream in(sealed);
  auto h = read_header(in);
  if (!h.ok()) {
    return h.error();
  }
  std::ostringstream out;
  auto s = open_stream(in, out, *h, key);
  if (!s.ok()) {
    return s.error();
  }
  return out.str();
}

}  // namespace

TEST_CASE("SealedFileRoundTripsAcrossChunkBoundaries") {
  const auto key = random_key();
  for (std::size_t n : {0, 1, 63, 64, 65, 127, 128, 129, 1000}) {
    const std::string plain = random_text(n);
    const std::string sealed = seal_string(plain, key);
    // header + one tag per chunk (an exact multiple ends with a full chunk; empty is one chunk)
    const std::size_t chunks = n == 0 ? 1 : (n + kSmallChunk - 1) / kSmallChunk;
    CHECK(sealed.size() == encode_header(header()).size() + n + 16 * chunks);
    auto back = open_string(sealed, key);
    REQUIRE(back.ok());
    CHECK(*back == plain);
  }
}

TEST_CASE("SealedFileHeaderRoundTrips") {
  SealedHeader h = header(kDefaultChunkSize);
  h.context_bound = true;
  const std::string sealed = seal_string("hello", random_key(), h);
  std::istringstream in(sealed);
  auto back = read_header(in);
  REQUIRE(back.ok());
  CHECK(back->key == "demo");
  CHECK(back->wrapped_key == h.wrapped_key);
  CHECK(back->context_bound);
  CHECK(back->chunk_size == kDefaultChunkSize);
  CHECK(sealed.substr(0, 9) == std::string("KEKDSEAL\x01"));
}

TEST_CASE("SealedFileFailsOnEveryFlippedBit") {
  const auto key = random_key();
  const std::string plain = random_text(150);  // three chunks, the last one partial
  const std::string sealed = seal_string(plain, key);
  for (std::size_t i = 0; i < sealed.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = sealed;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      auto r = open_string(bad, key);
      REQUIRE_MESSAGE(!r.ok(), "byte ", i, " bit ", bit);
      CHECK((r.error().code() == Code::kInvalidCiphertext ||
             r.error().code() == Code::kInvalidArgument));
    }
  }
}

TEST_CASE("SealedFileFailsWhenTruncatedOrExtended") {
  const auto key = random_key();
  const std::string plain =
      random_text(128);  // exactly two chunks: truncation at a boundary is possible
  const std::string sealed = seal_string(plain, key);
  for (std::size_t n = 0; n < sealed.size(); ++n) {
    auto r = open_string(sealed.substr(0, n), key);
    REQUIRE_MESSAGE(!r.ok(), "truncated to ", n);
  }
  for (const std::string& tail :
       {std::string(1, '\0'), std::string(16, 'x'), sealed.substr(sealed.size() - 80)}) {
    auto r = open_string(sealed + tail, key);
    REQUIRE(!r.ok());
    CHECK(r.error().code() == Code::kInvalidCiphertext);
  }
}

TEST_CASE("SealedFileFailsWhenChunksAreReorderedOrDropped") {
  const auto key = random_key();
  const std::string plain = random_text(64 * 3);
  const std::string sealed = seal_string(plain, key);
  const std::size_t head = encode_header(header()).size();
  const std::size_t c = kSmallChunk + 16;
  const std::string h = sealed.substr(0, head), c0 = sealed.substr(head, c),
                    c1 = sealed.substr(head + c, c), c2 = sealed.substr(head + 2 * c, c);
  for (const std::string& bad :
       {h + c1 + c0 + c2, h + c0 + c2, h + c0 + c1, h + c0 + c1 + c1 + c2, h + c2}) {
    auto r = open_string(bad, key);
    REQUIRE(!r.ok());
    CHECK(r.error().code() == Code::kInvalidCiphertext);
  }
  // A chunk moved between two files sealed under the same key still fails: the header differs.
  SealedHeader other = header();
  other.wrapped_key[0] ^= 1;
  const std::string foreign = seal_string(plain, key, other);
  auto r = open_string(h + foreign.substr(head, c) + c1 + c2, key);
  REQUIRE(!r.ok());
  CHECK(r.error().code() == Code::kInvalidCiphertext);
}

TEST_CASE("SealedFileFailsUnderAnotherDataKey") {
  const std::string sealed = seal_string("secret", random_key());
  auto r = open_string(sealed, random_key());
  REQUIRE(!r.ok());
  CHECK(r.error().code() == Code::kInvalidCiphertext);
  CHECK(r.error().message().find("tampered") != std::string::npos);
}

TEST_CASE("SealedFileHeaderRefusesForeignFilesAndVersions") {
  const std::string sealed = seal_string("x", random_key());
  for (const std::string& bad :
       {std::string(), std::string("hello world, not sealed"), sealed.substr(0, 12),
        std::string("KEKDSEAL\x02") + sealed.substr(9),
        std::string("KEKDSEAL\x01\x80") + sealed.substr(10)}) {
    std::istringstream in(bad);
    auto h = read_header(in);
    REQUIRE(!h.ok());
    CHECK(h.error().code() == Code::kInvalidArgument);
  }
  std::istringstream v2(std::string("KEKDSEAL\x02") + sealed.substr(9));
  CHECK(read_header(v2).error().message().find("version 2") != std::string::npos);
}

TEST_CASE("SealRefusesBadInputs") {
  std::istringstream in("x");
  std::ostringstream out;
  CHECK(seal_stream(in, out, header(), SecretBytes(16, 1)).error().code() ==
        Code::kInvalidArgument);
  SealedHeader bad_name = header();
  bad_name.key = "Not/A/Key";
  CHECK(seal_stream(in, out, bad_name, random_key()).error().code() == Code::kInvalidArgument);
  SealedHeader bad_chunk = header(1);
  CHECK(seal_stream(in, out, bad_chunk, random_key()).error().code() == Code::kInvalidArgument);
  CHECK(out.str().empty());
}

TEST_CASE("SealReportsProgress") {
  std::istringstream in(random_text(200));
  std::ostringstream out;
  std::vector<std::uint64_t> seen;
  REQUIRE(seal_stream(in, out, header(), random_key(), [&](std::uint64_t done) {
            seen.push_back(done);
          }).ok());
  CHECK(seen == std::vector<std::uint64_t>{64, 128, 192, 200});
}
