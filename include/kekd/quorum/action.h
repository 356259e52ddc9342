// The actions a quorum ceremony can perform (DESIGN §5). Every KEK lifecycle change is one of
// these, and so is every change of the operator set itself.
#pragma once

#include <optional>
#include <string_view>

#include "kekd/keys/lifecycle_mandate.h"

namespace kekd::quorum {

enum class Action {
  kCreateKey,
  kRotateKey,
  kDisableVersion,
  kEnableVersion,
  kScheduleDestroyVersion,
  kCancelDestroyVersion,
  kSetOperators,
};

// "create-key", "rotate-key", ..., "set-operators": as in statements and the API. The key
// actions are named by the keys layer (keys::action_name), so the signed names exist once.
std::string_view action_name(Action action);

// The keyring's action for a key ceremony; std::nullopt for set-operators, which changes no key.
std::optional<keys::LifecycleAction> lifecycle_action(Action action);
std::optional<Action> parse_action(std::string_view name);

// Which statement fields an action carries (docs/ceremony-formats.md, the table of lines).
bool action_has_key(Action action);            // all but set-operators
bool action_has_version(Action action);        // the four version state changes
bool action_has_destroy_after(Action action);  // schedule-destroy-version

}  // namespace kekd::quorum
