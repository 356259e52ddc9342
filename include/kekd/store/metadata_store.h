// Metadata persistence: what kekd knows about keys besides their material.
//
// The token is the source of truth for key material; the store records names, ids, versions,
// states and history. This interface is what every backend implements (SQLite now, PostgreSQL
// for several replicas later), so it speaks plain records and the project's Result/Status.
//
// Contract for every implementation:
// - Each method is atomic: it commits completely or changes nothing.
// - Methods are safe to call from several threads at once.
// - A Status that is ok means the change is durable (committed to disk).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kekd/common/error.h"

namespace kekd::store {

// Lifecycle of one KEK version (DESIGN §3).
enum class KeyState {
  kEnabled,           // wraps (if primary) and unwraps
  kDisabled,          // neither; reversible
  kDestroyScheduled,  // like disabled; destroyed after destroy_after unless cancelled
  kDestroyed,         // token object deleted; metadata kept
};

std::string_view state_name(KeyState state);  // "enabled", "disabled", ...
std::optional<KeyState> parse_state(std::string_view name);

// Milliseconds since the Unix epoch, UTC.
using UnixMillis = std::int64_t;

struct KeyVersionRecord {
  std::uint32_t version = 0;  // 1, 2, 3, ...
  KeyState state = KeyState::kEnabled;
  UnixMillis created_at = 0;
  UnixMillis updated_at = 0;
  std::string ceremony_id;                  // the ceremony that created it; empty if none
  std::optional<UnixMillis> destroy_after;  // set only in kDestroyScheduled

  bool operator==(const KeyVersionRecord&) const = default;
};

struct KeyRecord {
  std::string name;  // [a-z0-9][a-z0-9_-]{0,63}
  std::string id;    // stable UUID, the AWS-style KeyId
  UnixMillis created_at = 0;
  std::vector<KeyVersionRecord> versions;  // ascending by version, never empty

  bool operator==(const KeyRecord&) const = default;
};

class MetadataStore {
 public:
  virtual ~MetadataStore() = default;

  // All keys, ordered by name, each with all its versions.
  virtual Result<std::vector<KeyRecord>> list_keys() = 0;

  // The key with this name, or std::nullopt.
  virtual Result<std::optional<KeyRecord>> find_key(std::string_view name) = 0;

  // Inserts a key with the versions it carries (normally exactly version 1).
  // kAlreadyExists if the name or the id is taken; kInvalidArgument if versions is empty.
  virtual Status create_key(const KeyRecord& key) = 0;

  // Appends a version to an existing key. The version number must be exactly one more than the
  // highest existing one (kFailedPrecondition otherwise); kNotFound for an unknown key.
  virtual Status add_version(std::string_view name, const KeyVersionRecord& version) = 0;

  // Changes the state of one version. destroy_after must be set exactly when the new state is
  // kDestroyScheduled (kInvalidArgument otherwise); kNotFound for an unknown key or version.
  virtual Status set_version_state(std::string_view name, std::uint32_t version, KeyState state,
                                   std::optional<UnixMillis> destroy_after,
                                   UnixMillis updated_at) = 0;
};

}  // namespace kekd::store
