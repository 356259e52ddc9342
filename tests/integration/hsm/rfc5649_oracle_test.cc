// An independent RFC 5649 oracle: with a test-only KEK of known value, what SoftHSM produces
// through kekd's adapter equals Botan's nist_key_wrap_padded, and Botan opens it. The known-value
// key is extractable and exists only inside this test; real KEKs are generated in the token, and
// kekd refuses any other (Pkcs11Config::require_generated_keks, off here only).
#include <doctest/doctest.h>

#include <botan/block_cipher.h>
#include <botan/nist_keywrap.h>

#include "kekd/keys/ciphertext.h"
#include "kekd/keys/inner_payload.h"
#include "support/keyring_harness.h"
#include "support/raw_session.h"
#include "support/token_fixture.h"

using namespace kekd;
using namespace kekd::testing;

namespace {

const Bytes kKnownKek = pattern_bytes(32, 0x10);

std::unique_ptr<Botan::BlockCipher> known_aes() {
  auto aes = Botan::BlockCipher::create_or_throw("AES-256");
  aes->set_key(kKnownKek);
  return aes;
}

struct Fixture {
  TokenFixture token;
  std::unique_ptr<hsm::Pkcs11Hsm> hsm = open_accepting_imported_keks(token);
  RawSession raw{*hsm};
  Fixture() { raw.import_known_aes_key("kekd:oracle:1", kKnownKek); }

  // kekd refuses a KEK that was not generated in the token (kek_identity_test.cc); the oracle
  // needs one of known value, so only here is that check off.
  static std::unique_ptr<hsm::Pkcs11Hsm> open_accepting_imported_keks(const TokenFixture& token) {
    hsm::Pkcs11Config config = token.config(2);
    config.require_generated_keks = false;
    auto opened = hsm::Pkcs11Hsm::open(std::move(config));
    REQUIRE(opened.ok());
    return std::move(*opened);
  }
};

}  // namespace

TEST_CASE_FIXTURE(Fixture, "HsmWrapEqualsBotanNistKeyWrapPadded") {
  for (std::size_t n : {16, 24, 40, 64, 1064, 4136}) {
    CAPTURE(n);
    Bytes payload = pattern_bytes(n, static_cast<std::uint8_t>(n));
    auto wrapped = hsm->wrap("kekd:oracle:1", payload);
    REQUIRE(wrapped.ok());
    CHECK(*wrapped == Botan::nist_key_wrap_padded(payload.data(), payload.size(), *known_aes()));
    auto opened = Botan::nist_key_unwrap_padded(wrapped->data(), wrapped->size(), *known_aes());
    CHECK(as_bytes(opened) == payload);
  }
}

TEST_CASE_FIXTURE(Fixture, "HsmUnwrapsWhatBotanWrapped") {
  Bytes payload = pattern_bytes(72, 3);
  Bytes wrapped = Botan::nist_key_wrap_padded(payload.data(), payload.size(), *known_aes());
  auto opened = hsm->unwrap("kekd:oracle:1", wrapped);
  REQUIRE(opened.ok());
  CHECK(as_bytes(*opened) == payload);
}

TEST_CASE_FIXTURE(Fixture, "KeyringCiphertextOpensWithBotanAndHasDesignFraming") {
  // Record the known-value key as version 1 of key "oracle", so the keyring wraps with it.
  KeyringHarness h(*hsm);
  REQUIRE(h.store()
              .create_key(store::KeyRecord{
                  "oracle",
                  "00000000-0000-4000-8000-000000000000",
                  h.now,
                  {{1, store::KeyState::kEnabled, h.now, h.now, "", std::nullopt}}})
              .ok());
  auto keyring = keys::Keyring::open(*hsm, h.store());
  REQUIRE(keyring.ok());

  keys::EncryptionContext context{{"tenant", "acme"}};
  Bytes dek = pattern_bytes(20, 0x77);
  auto wrapped = (*keyring)->wrap("oracle", dek, context);
  REQUIRE(wrapped.ok());
  auto parsed = keys::parse_ciphertext(wrapped->ciphertext);
  REQUIRE(parsed.ok());
  Bytes payload = as_bytes(
      Botan::nist_key_unwrap_padded(parsed->wrapped.data(), parsed->wrapped.size(), *known_aes()));

  // 32-byte context digest, 2-byte length, the DEK, zero padding to a multiple of 8.
  auto digest = keys::context_digest(context);
  REQUIRE(payload.size() == 56);
  CHECK(Bytes(payload.begin(), payload.begin() + 32) == Bytes(digest.begin(), digest.end()));
  CHECK(payload[32] == 0);
  CHECK(payload[33] == 20);
  CHECK(Bytes(payload.begin() + 34, payload.begin() + 54) == dek);
  CHECK(Bytes(payload.begin() + 54, payload.end()) == Bytes(2, 0));
}
