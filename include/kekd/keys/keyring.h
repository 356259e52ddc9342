// The keyring: named KEKs, their versions and states, and the DEK operations applications use.
//
// Security model:
// - KEK material lives only in the token (hsm::Hsm); the store holds names, ids and history.
// - Plaintext DEKs exist only in SecretBytes, which wipe themselves; rewrap never returns one.
// - A ciphertext opens only under the key and version it names, the key the caller expects, and
//   the exact encryption context it was made with; every failure of that is kInvalidCiphertext.
// - Lifecycle changes require a LifecycleMandate (lifecycle_mandate.h); there is no other path.
//
// Thread-safe. Key metadata is cached in memory and changed only through this object, after the
// store has committed. (Several kekd replicas sharing one store need the cache refreshed from the
// store: that arrives with the PostgreSQL backend, DESIGN §12.)
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "kekd/common/bytes.h"
#include "kekd/common/error.h"
#include "kekd/hsm/hsm.h"
#include "kekd/keys/encryption_context.h"
#include "kekd/keys/lifecycle_mandate.h"
#include "kekd/store/metadata_store.h"

namespace kekd::keys {

using store::KeyState;

inline constexpr std::size_t kMaxDataKeyBytes = 1024;

struct KeyInfo {
  store::KeyRecord record;
  std::uint32_t primary_version = 0;  // the newest enabled version; 0 if none is enabled
};

struct Wrapped {
  std::string key;
  std::uint32_t version = 0;
  Bytes ciphertext;
};

struct DataKey {
  std::string key;
  std::uint32_t version = 0;
  Bytes ciphertext;
  std::optional<SecretBytes> plaintext;  // absent when the caller asked for none
};

struct Unwrapped {
  std::string key;
  std::uint32_t version = 0;
  SecretBytes plaintext;
};

class Keyring {
 public:
  using Clock = std::function<store::UnixMillis()>;

  // Loads key metadata from the store. The Hsm and the store must outlive the keyring.
  static Result<std::unique_ptr<Keyring>> open(hsm::Hsm& hsm, store::MetadataStore& store,
                                               Clock clock = system_clock());
  static Clock system_clock();

  // A fresh DEK of `bytes` (1..1024) bytes from the token's RNG, wrapped under the primary version.
  Result<DataKey> generate_data_key(std::string_view key, std::size_t bytes,
                                    const EncryptionContext& context, bool return_plaintext);

  // Wraps plaintext (1..4096 bytes) under the key's primary version.
  Result<Wrapped> wrap(std::string_view key, ByteView plaintext, const EncryptionContext& context);

  // Opens a ciphertext of `key`, under the version it names.
  Result<Unwrapped> unwrap(std::string_view key, ByteView ciphertext,
                           const EncryptionContext& context);

  // Re-wraps a ciphertext of `key` under the key's primary version, inside kekd: the plaintext
  // is never returned.
  Result<Wrapped> rewrap(std::string_view key, ByteView ciphertext,
                         const EncryptionContext& context);

  // The HSM's session hold (hsm::Hsm::hold_session), for a run of operations on one thread.
  std::unique_ptr<hsm::Hsm::SessionHold> hold_session() { return hsm_.hold_session(); }

  Result<KeyInfo> describe(std::string_view key) const;
  // The key whose stable UUID (KeyRecord::id) this is: the KMS API's KeyId.
  Result<KeyInfo> describe_id(std::string_view id) const;
  std::vector<KeyInfo> list() const;

  // Performs the one lifecycle change the mandate names.
  //
  // Crash safety (DESIGN §5 "Execution"): with a resume mandate (lifecycle_mandate.h), apply
  // is idempotent, so a ceremony interrupted at any point ends with exactly what one complete
  // run gives: create-key and rotate-key return ok without a new KEK when a version recorded for
  // this ceremony exists, and adopt a token object labelled kekd:<name>:<v> (v = 1 for create,
  // the next version for rotate) that the store does not record yet instead of failing
  // kAlreadyExists; a state change finds the version already in its target state and succeeds.
  // A first attempt (resume unset) cannot have left anything behind and keeps the strict checks.
  Result<KeyInfo> apply(LifecycleMandate mandate);

  // Destroys every version in destroy_scheduled whose destroy_after is at or before now: the
  // token object first (one already gone counts as destroyed), then the record becomes
  // destroyed. The waiting period was approved by the ceremony that scheduled it, so this needs
  // no mandate. Returns how many versions it destroyed; stops at the first failure, leaving the
  // rest for the next call.
  Result<int> destroy_due(
      store::UnixMillis now,
      const std::function<void(const std::string& name, std::uint32_t version)>& on_destroyed = {});

 private:
  Keyring(hsm::Hsm& hsm, store::MetadataStore& store, Clock clock)
      : hsm_(hsm), store_(store), clock_(std::move(clock)) {}

  struct Target {
    std::string key;
    std::uint32_t version;
  };
  Result<Target> primary_target(std::string_view key) const;
  Result<Unwrapped> open_ciphertext(std::string_view key, ByteView ciphertext,
                                    const EncryptionContext& context);
  Result<Wrapped> wrap_under(const Target& target, ByteView plaintext,
                             const EncryptionContext& context);

  Status create_key(const LifecycleMandate& mandate);
  Status rotate_key(const LifecycleMandate& mandate);
  Status change_state(const LifecycleMandate& mandate);
  // Generates the KEK with this label, or with a resume mandate adopts one that exists already.
  Status generate_or_adopt(const LifecycleMandate& mandate, const std::string& label);
  Result<std::string> new_key_id();
  void cache(store::KeyRecord record);

  hsm::Hsm& hsm_;
  store::MetadataStore& store_;
  Clock clock_;

  std::mutex lifecycle_mu_;  // one lifecycle change at a time
  mutable std::shared_mutex cache_mu_;
  std::map<std::string, KeyInfo, std::less<>> keys_;
};

}  // namespace kekd::keys
