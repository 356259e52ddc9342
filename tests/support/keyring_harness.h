// A keyring over a given Hsm, with a real SQLite store in its own temporary directory and a
// clock the test controls. Used with the in-memory fake (unit) and with SoftHSM (integration).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kekd/keys/keyring.h"
#include "kekd/store/sqlite_store.h"
#include "support/temp_dir.h"

namespace kekd::testing {

// Everything a rejected request must leave untouched: the store's records and the token's KEKs.
struct Snapshot {
  std::vector<store::KeyRecord> keys;
  std::vector<std::string> labels;
  bool operator==(const Snapshot&) const = default;
};

class KeyringHarness {
 public:
  explicit KeyringHarness(hsm::Hsm& hsm);

  keys::Keyring& keyring() { return *keyring_; }
  store::SqliteStore& store() { return *store_; }
  std::string store_path() const { return dir_.file("kekd.db"); }

  // Creates a key through a test mandate; fails the test if that does not work.
  void create_key(const std::string& name);
  void rotate_key(const std::string& name);

  Snapshot snapshot();

  store::UnixMillis now = 1'795'000'000'000;  // the clock the keyring reads

 private:
  hsm::Hsm& hsm_;
  TempDir dir_;
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<keys::Keyring> keyring_;
};

Bytes as_bytes(const SecretBytes& s);
Bytes pattern_bytes(std::size_t n, std::uint8_t seed);

}  // namespace kekd::testing
