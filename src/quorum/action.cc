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

// These names are signed by operators and persisted: renaming one breaks every stored statement.
std::string_view action_name(Action action) {
  switch (action) {
    case Action::kCreateKey:
      return "create-key";
    case Action::kRotateKey:
      return "rotate-key";
    case Action::kDisableVersion:
      return "disable-version";
    case Action::kEnableVersion:
      return "enable-version";
    case Action::kScheduleDestroyVersion:
      return "schedule-destroy-version";
    case Action::kCancelDestroyVersion:
      return "cancel-destroy-version";
    case Action::kSetOperators:
      return "set-operators";
  }
  return "invalid";
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
