#include "support/keyring_harness.h"

#include <doctest/doctest.h>

#include "support/test_mandate.h"

namespace kekd::testing {

KeyringHarness::KeyringHarness(hsm::Hsm& hsm) : hsm_(hsm) {
  auto store = store::SqliteStore::open(store_path());
  REQUIRE_MESSAGE(store.ok(), store.error().to_string());
  store_ = std::move(*store);
  auto keyring = keys::Keyring::open(hsm_, *store_, [this] { return now; });
  REQUIRE_MESSAGE(keyring.ok(), keyring.error().to_string());
  keyring_ = std::move(*keyring);
}

void KeyringHarness::create_key(const std::string& name) {
  auto info = keyring_->apply(MandateForTests::create_key(name));
  REQUIRE_MESSAGE(info.ok(), info.error().to_string());
}

void KeyringHarness::rotate_key(const std::string& name) {
  auto info = keyring_->apply(MandateForTests::rotate_key(name));
  REQUIRE_MESSAGE(info.ok(), info.error().to_string());
}

Snapshot KeyringHarness::snapshot() {
  auto keys = store_->list_keys();
  REQUIRE(keys.ok());
  auto labels = hsm_.find_keks("kekd:");
  REQUIRE(labels.ok());
  return Snapshot{std::move(*keys), std::move(*labels)};
}

Bytes as_bytes(const SecretBytes& s) { return Bytes(s.begin(), s.end()); }

Bytes pattern_bytes(std::size_t n, std::uint8_t seed) {
  Bytes out(n);
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = static_cast<std::uint8_t>(seed + i * 31);
  }
  return out;
}

}  // namespace kekd::testing
