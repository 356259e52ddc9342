#include "kekd/quorum/action.h"

namespace kekd::quorum {
namespace {

constexpr Action kAllActions[] = {
    Action::kCreateKey,
    Action::kRotateKey,
    Action::kDisableVersion,
    Action::kEnableVersion,
    Action::kScheduleDestroyVersion,
    Action::kCancelDestroyVersion,
    Action::kSetOperators,
};

}  // namespace

std::optional<keys::LifecycleAction> lifecycle_action(Action action) {
  using keys::LifecycleAction;
  switch (action) {
    case Action::kCreateKey:
      return LifecycleAction::kCreateKey;
    case Action::kRotateKey:
      return LifecycleAction::kRotateKey;
    case Action::kDisableVersion:
      return LifecycleAction::kDisableVersion;
    case Action::kEnableVersion:
      return LifecycleAction::kEnableVersion;
    case Action::kScheduleDestroyVersion:
      return LifecycleAction::kScheduleDestroyVersion;
    case Action::kCancelDestroyVersion:
      return LifecycleAction::kCancelDestroyVersion;
    case Action::kSetOperators:
      return std::nullopt;
  }
  return std::nullopt;
}

// These names are signed by operators and persisted: renaming one breaks every stored statement.
std::string_view action_name(Action action) {
  std::optional<keys::LifecycleAction> key_action = lifecycle_action(action);
  return key_action ? keys::action_name(*key_action) : std::string_view("set-operators");
}

std::optional<Action> parse_action(std::string_view name) {
  for (Action action : kAllActions) {
    if (action_name(action) == name) {
      return action;
    }
  }
  return std::nullopt;
}

bool action_has_key(Action action) { return action != Action::kSetOperators; }

bool action_has_version(Action action) {
  return action == Action::kDisableVersion || action == Action::kEnableVersion ||
         action == Action::kScheduleDestroyVersion || action == Action::kCancelDestroyVersion;
}

bool action_has_destroy_after(Action action) { return action == Action::kScheduleDestroyVersion; }

}  // namespace kekd::quorum
