#include "kekd/keys/keyring.h"

#include <chrono>
#include <cstdio>

#include "kekd/common/fault_point.h"
#include "kekd/keys/ciphertext.h"
#include "kekd/keys/inner_payload.h"
#include "kekd/keys/key_name.h"

namespace kekd::keys {
namespace {

std::uint32_t primary_of(const store::KeyRecord& record) {
  for (auto it = record.versions.rbegin(); it != record.versions.rend(); ++it) {
    if (it->state == KeyState::kEnabled) {
      return it->version;
    }
  }
  return 0;
}

Error key_not_found(std::string_view key) {
  return Error(Code::kNotFound, "key '" + std::string(key) + "' not found");
}

// The token and the store disagree: a recorded version has no key object. Not the caller's
// fault and not transient; an operator must look (docs: reconciliation).
Error missing_kek(std::string_view label) {
  return Error(Code::kInternal, "the token holds no object labelled " + std::string(label) +
                                    " although the store "
                                    "records it");
}

const store::KeyVersionRecord* find_version(const store::KeyRecord& record, std::uint32_t version) {
  for (const store::KeyVersionRecord& v : record.versions) {
    if (v.version == version) {
      return &v;
    }
  }
  return nullptr;
}

// Whether a resumed ceremony already created a version of this key (its record is committed).
bool created_by(const store::KeyRecord& record, const LifecycleMandate& mandate) {
  if (!mandate.resume() || mandate.ceremony_id().empty()) {
    return false;
  }
  for (const store::KeyVersionRecord& v : record.versions) {
    if (v.ceremony_id == mandate.ceremony_id()) {
      return true;
    }
  }
  return false;
}

}  // namespace

Keyring::Clock Keyring::system_clock() {
  return [] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
}

Result<std::unique_ptr<Keyring>> Keyring::open(hsm::Hsm& hsm, store::MetadataStore& store,
                                               Clock clock) {
  KEKD_ASSIGN_OR_RETURN(std::vector<store::KeyRecord> records, store.list_keys());
  std::unique_ptr<Keyring> keyring(new Keyring(hsm, store, std::move(clock)));
  for (store::KeyRecord& record : records) {
    keyring->cache(std::move(record));
  }
  return keyring;
}

void Keyring::cache(store::KeyRecord record) {
  std::uint32_t primary = primary_of(record);
  std::string name = record.name;
  std::unique_lock lock(cache_mu_);
  keys_.insert_or_assign(std::move(name), KeyInfo{std::move(record), primary});
}

Result<KeyInfo> Keyring::describe(std::string_view key) const {
  std::shared_lock lock(cache_mu_);
  auto it = keys_.find(key);
  if (it == keys_.end()) {
    return key_not_found(key);
  }
  return it->second;
}

Result<KeyInfo> Keyring::describe_id(std::string_view id) const {
  std::shared_lock lock(cache_mu_);
  for (const auto& [name, info] : keys_) {
    if (info.record.id == id) return info;
  }
  return Error(Code::kNotFound, "no key with id '" + std::string(id) + "'");
}

std::vector<KeyInfo> Keyring::list() const {
  std::shared_lock lock(cache_mu_);
  std::vector<KeyInfo> out;
  out.reserve(keys_.size());
  for (const auto& [name, info] : keys_) {
    out.push_back(info);
  }
  return out;
}

Result<Keyring::Target> Keyring::primary_target(std::string_view key) const {
  std::shared_lock lock(cache_mu_);
  auto it = keys_.find(key);
  if (it == keys_.end()) {
    return key_not_found(key);
  }
  if (it->second.primary_version == 0) {
    return Error(Code::kFailedPrecondition,
                 "key '" + std::string(key) + "' has no enabled version to wrap with");
  }
  return Target{it->first, it->second.primary_version};
}

Result<Wrapped> Keyring::wrap_under(const Target& target, ByteView plaintext,
                                    const EncryptionContext& context) {
  KEKD_ASSIGN_OR_RETURN(SecretBytes payload, build_payload(context_digest(context), plaintext));
  const std::string label = kek_label(target.key, target.version);
  Result<Bytes> wrapped = hsm_.wrap(label, payload);
  if (!wrapped.ok()) {
    return wrapped.error().code() == Code::kNotFound ? missing_kek(label) : wrapped.error();
  }
  Ciphertext c{target.key, target.version, std::move(*wrapped)};
  return Wrapped{target.key, target.version, encode_ciphertext(c)};
}

Result<Unwrapped> Keyring::open_ciphertext(std::string_view key, ByteView ciphertext,
                                           const EncryptionContext& context) {
  std::string label;
  Ciphertext parsed;
  {
    std::shared_lock lock(cache_mu_);
    auto it = keys_.find(key);
    if (it == keys_.end()) {
      return key_not_found(key);
    }
    KEKD_ASSIGN_OR_RETURN(parsed, parse_ciphertext(ciphertext));
    // A ciphertext of another key, or of a version that never existed, is as invalid as a
    // tampered one: the caller learns nothing about other keys from the difference.
    const store::KeyVersionRecord* version =
        parsed.key_name == key ? find_version(it->second.record, parsed.version) : nullptr;
    if (version == nullptr) {
      return invalid_ciphertext();
    }
    if (version->state != KeyState::kEnabled) {
      return Error(Code::kFailedPrecondition, "version " + std::to_string(parsed.version) +
                                                  " of key '" + std::string(key) + "' is " +
                                                  std::string(store::state_name(version->state)));
    }
    label = kek_label(parsed.key_name, parsed.version);
  }
  Result<SecretBytes> payload = hsm_.unwrap(label, parsed.wrapped);
  if (!payload.ok()) {
    return payload.error().code() == Code::kNotFound ? missing_kek(label) : payload.error();
  }
  KEKD_ASSIGN_OR_RETURN(SecretBytes plaintext, open_payload(*payload, context_digest(context)));
  return Unwrapped{std::move(parsed.key_name), parsed.version, std::move(plaintext)};
}

Result<DataKey> Keyring::generate_data_key(std::string_view key, std::size_t bytes,
                                           const EncryptionContext& context,
                                           bool return_plaintext) {
  if (bytes == 0 || bytes > kMaxDataKeyBytes) {
    return Error(Code::kInvalidArgument, "a data key is 1 to 1024 bytes");
  }
  KEKD_ASSIGN_OR_RETURN(Target target, primary_target(key));
  KEKD_ASSIGN_OR_RETURN(SecretBytes plaintext, hsm_.random(bytes));
  KEKD_ASSIGN_OR_RETURN(Wrapped wrapped, wrap_under(target, plaintext, context));
  DataKey out{std::move(wrapped.key), wrapped.version, std::move(wrapped.ciphertext), std::nullopt};
  if (return_plaintext) {
    out.plaintext = std::move(plaintext);
  }
  return out;
}

Result<Wrapped> Keyring::wrap(std::string_view key, ByteView plaintext,
                              const EncryptionContext& context) {
  if (plaintext.empty() || plaintext.size() > kMaxPlaintext) {
    return Error(Code::kInvalidArgument, "plaintext must be 1 to 4096 bytes");
  }
  KEKD_ASSIGN_OR_RETURN(Target target, primary_target(key));
  return wrap_under(target, plaintext, context);
}

Result<Unwrapped> Keyring::unwrap(std::string_view key, ByteView ciphertext,
                                  const EncryptionContext& context) {
  return open_ciphertext(key, ciphertext, context);
}

Result<Wrapped> Keyring::rewrap(std::string_view key, ByteView ciphertext,
                                const EncryptionContext& context) {
  KEKD_ASSIGN_OR_RETURN(Unwrapped opened, open_ciphertext(key, ciphertext, context));
  KEKD_ASSIGN_OR_RETURN(Target target, primary_target(key));
  return wrap_under(target, opened.plaintext, context);
}

Result<std::string> Keyring::new_key_id() {
  KEKD_ASSIGN_OR_RETURN(SecretBytes r, hsm_.random(16));
  r[6] = static_cast<std::uint8_t>((r[6] & 0x0f) | 0x40);  // RFC 9562 version 4
  r[8] = static_cast<std::uint8_t>((r[8] & 0x3f) | 0x80);  // RFC 9562 variant
  std::string hex = to_hex(r);
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
         hex.substr(16, 4) + "-" + hex.substr(20, 12);
}

Result<KeyInfo> Keyring::apply(LifecycleMandate mandate) {
  std::lock_guard lock(lifecycle_mu_);
  switch (mandate.action()) {
    case LifecycleAction::kCreateKey:
      KEKD_RETURN_IF_ERROR(create_key(mandate));
      break;
    case LifecycleAction::kRotateKey:
      KEKD_RETURN_IF_ERROR(rotate_key(mandate));
      break;
    case LifecycleAction::kDisableVersion:
    case LifecycleAction::kEnableVersion:
    case LifecycleAction::kScheduleDestroyVersion:
    case LifecycleAction::kCancelDestroyVersion:
      KEKD_RETURN_IF_ERROR(change_state(mandate));
      break;
  }
  return describe(mandate.key());
}

Status Keyring::generate_or_adopt(const LifecycleMandate& mandate, const std::string& label) {
  Status generated = hsm_.generate_kek(label);
  if (generated.ok()) {
    return ok_status();
  }
  // Only this ceremony acts on this key (one ceremony per key at a time), so an object with
  // the label it would generate should be what its own interrupted attempt generated.
  if (!(mandate.resume() && generated.error().code() == Code::kAlreadyExists)) {
    return generated;
  }
  // Before the store records an adopted object as a KEK, it must be one: one wrap runs the HSM
  // layer's check that the token generated the object and never let it out (a key planted under the
  // label by someone with the PIN fails it), and shows the object works. The probe's input is
  // fixed and its output discarded: nothing secret goes in or comes out.
  static const Bytes kProbe(16, 0);
  if (Result<Bytes> probe = hsm_.wrap(label, kProbe); !probe.ok()) {
    return Error(probe.error().code(),
                 "the token object left under " + label +
                     " by the interrupted attempt cannot be adopted: " + probe.error().message());
  }
  return ok_status();
}

Status Keyring::create_key(const LifecycleMandate& mandate) {
  const std::string& name = mandate.key();
  KEKD_RETURN_IF_ERROR(validate_key_name(name));
  if (Result<KeyInfo> existing = describe(name); existing.ok()) {
    if (created_by(existing->record, mandate)) {
      return ok_status();  // the interrupted attempt got as far as the store commit
    }
    return Error(Code::kAlreadyExists, "key '" + name + "' already exists");
  }
  KEKD_ASSIGN_OR_RETURN(std::string id, new_key_id());
  const std::string label = kek_label(name, 1);
  KEKD_RETURN_IF_ERROR(generate_or_adopt(mandate, label));
  KEKD_FAULT_POINT("keyring.after_generate_kek");
  const store::UnixMillis now = clock_();
  store::KeyRecord record{
      name, id, now, {{1, KeyState::kEnabled, now, now, mandate.ceremony_id(), std::nullopt}}};
  Status stored = store_.create_key(record);
  if (!stored.ok()) {
    // Leave no KEK without a record. (A crash right here is what start-up reconciliation, which
    // compares token labels with the store, is for.)
    (void)hsm_.destroy_kek(label);
    return stored;
  }
  cache(std::move(record));
  return ok_status();
}

Status Keyring::rotate_key(const LifecycleMandate& mandate) {
  KEKD_ASSIGN_OR_RETURN(KeyInfo info, describe(mandate.key()));
  if (created_by(info.record, mandate)) {
    return ok_status();  // the interrupted attempt got as far as the store commit
  }
  const std::uint32_t next = info.record.versions.back().version + 1;
  const std::string label = kek_label(mandate.key(), next);
  KEKD_RETURN_IF_ERROR(generate_or_adopt(mandate, label));
  KEKD_FAULT_POINT("keyring.after_generate_kek");
  const store::UnixMillis now = clock_();
  store::KeyVersionRecord version{next, KeyState::kEnabled,    now,
                                  now,  mandate.ceremony_id(), std::nullopt};
  Status stored = store_.add_version(mandate.key(), version);
  if (!stored.ok()) {
    (void)hsm_.destroy_kek(label);
    return stored;
  }
  info.record.versions.push_back(std::move(version));
  cache(std::move(info.record));
  return ok_status();
}

Status Keyring::change_state(const LifecycleMandate& mandate) {
  KEKD_ASSIGN_OR_RETURN(KeyInfo info, describe(mandate.key()));
  store::KeyVersionRecord* version = nullptr;
  for (store::KeyVersionRecord& v : info.record.versions) {
    if (v.version == mandate.version()) {
      version = &v;
    }
  }
  if (version == nullptr) {
    return Error(Code::kNotFound,
                 "key '" + mandate.key() + "' has no version " + std::to_string(mandate.version()));
  }

  // The transitions of DESIGN §3. Cancelling a scheduled destruction leaves the version disabled
  // (as AWS KMS does): enabling it again is a decision of its own.
  const KeyState from = version->state;
  std::optional<KeyState> to;
  std::optional<store::UnixMillis> destroy_after;
  switch (mandate.action()) {
    case LifecycleAction::kDisableVersion:
      if (from == KeyState::kEnabled) to = KeyState::kDisabled;
      break;
    case LifecycleAction::kEnableVersion:
      if (from == KeyState::kDisabled) to = KeyState::kEnabled;
      break;
    case LifecycleAction::kScheduleDestroyVersion:
      if (!mandate.destroy_after()) {
        return Error(Code::kInvalidArgument, "scheduling destruction needs a destroy-after time");
      }
      if (from == KeyState::kEnabled || from == KeyState::kDisabled) {
        to = KeyState::kDestroyScheduled;
        destroy_after = mandate.destroy_after();
      }
      break;
    case LifecycleAction::kCancelDestroyVersion:
      if (from == KeyState::kDestroyScheduled) to = KeyState::kDisabled;
      break;
    default:
      break;
  }
  if (mandate.resume() && !to) {
    // The interrupted attempt committed the change already: the version is where this action
    // takes it (with the same deadline, for a scheduled destruction).
    const bool done =
        (mandate.action() == LifecycleAction::kDisableVersion && from == KeyState::kDisabled) ||
        (mandate.action() == LifecycleAction::kEnableVersion && from == KeyState::kEnabled) ||
        (mandate.action() == LifecycleAction::kScheduleDestroyVersion &&
         from == KeyState::kDestroyScheduled &&
         version->destroy_after == mandate.destroy_after()) ||
        (mandate.action() == LifecycleAction::kCancelDestroyVersion && from == KeyState::kDisabled);
    if (done) {
      return ok_status();
    }
  }
  if (!to) {
    return Error(Code::kFailedPrecondition, "version " + std::to_string(version->version) +
                                                " of key '" + mandate.key() + "' is " +
                                                std::string(store::state_name(from)) + "; cannot " +
                                                std::string(action_name(mandate.action())));
  }
  const store::UnixMillis now = clock_();
  KEKD_RETURN_IF_ERROR(
      store_.set_version_state(mandate.key(), version->version, *to, destroy_after, now));
  version->state = *to;
  version->destroy_after = destroy_after;
  version->updated_at = now;
  cache(std::move(info.record));
  return ok_status();
}

Result<int> Keyring::destroy_due(
    store::UnixMillis now,
    const std::function<void(const std::string& name, std::uint32_t version)>& on_destroyed) {
  std::lock_guard lock(lifecycle_mu_);
  int destroyed = 0;
  for (KeyInfo& info : list()) {
    bool changed = false;
    for (store::KeyVersionRecord& v : info.record.versions) {
      if (v.state != KeyState::kDestroyScheduled || !v.destroy_after || *v.destroy_after > now) {
        continue;
      }
      // Token first: a crash after this leaves a record that the next call finishes (the object
      // is gone: kNotFound). The other order could leave key material that the store calls
      // destroyed.
      Status gone = hsm_.destroy_kek(kek_label(info.record.name, v.version));
      if (!gone.ok() && gone.error().code() != Code::kNotFound) {
        if (changed) {
          cache(std::move(info.record));
        }
        return gone.error();
      }
      Status stored = store_.set_version_state(info.record.name, v.version, KeyState::kDestroyed,
                                               std::nullopt, now);
      if (!stored.ok()) {
        if (changed) {
          cache(std::move(info.record));
        }
        return stored.error();
      }
      v.state = KeyState::kDestroyed;
      v.destroy_after.reset();
      v.updated_at = now;
      changed = true;
      ++destroyed;
      if (on_destroyed) on_destroyed(info.record.name, v.version);
    }
    if (changed) {
      cache(std::move(info.record));
    }
  }
  return destroyed;
}

}  // namespace kekd::keys
