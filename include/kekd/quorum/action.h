// The actions a quorum ceremony can perform (DESIGN §5). Every KEK lifecycle change is one of
// these, and so is every change of the operator set itself.
#pragma once

#include <optional>
#include <string_view>

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

// "create-key", "rotate-key", ..., "set-operators": as in statements and the API.
std::string_view action_name(Action action);
std::optional<Action> parse_action(std::string_view name);

// Which statement fields an action carries (docs/ceremony-formats.md, the table of lines).
bool action_has_key(Action action);            // all but set-operators
bool action_has_version(Action action);        // the four version state changes
bool action_has_destroy_after(Action action);  // schedule-destroy-version

}  // namespace kekd::quorum
