#include <array>

#include "kekd/store/metadata_store.h"

namespace kekd::store {
namespace {

constexpr std::array kAllStates = {KeyState::kEnabled, KeyState::kDisabled,
                                   KeyState::kDestroyScheduled, KeyState::kDestroyed};

}  // namespace

// These names are persisted (key_versions.state, with a CHECK listing them) and appear in the
// API: renaming one needs a schema migration and an API version, not just an edit here.
std::string_view state_name(KeyState state) {
  switch (state) {
    case KeyState::kEnabled:
      return "enabled";
    case KeyState::kDisabled:
      return "disabled";
    case KeyState::kDestroyScheduled:
      return "destroy_scheduled";
    case KeyState::kDestroyed:
      return "destroyed";
  }
  // Only a value cast from outside the enum gets here; the schema's CHECK refuses to store it.
  return "invalid";
}

std::optional<KeyState> parse_state(std::string_view name) {
  for (KeyState state : kAllStates) {
    if (state_name(state) == name) {
      return state;
    }
  }
  return std::nullopt;
}

}  // namespace kekd::store
