#include "kekd/keys/lifecycle_mandate.h"

namespace kekd::keys {

std::string_view action_name(LifecycleAction action) {
  switch (action) {
    case LifecycleAction::kCreateKey:
      return "create-key";
    case LifecycleAction::kRotateKey:
      return "rotate-key";
    case LifecycleAction::kDisableVersion:
      return "disable-version";
    case LifecycleAction::kEnableVersion:
      return "enable-version";
    case LifecycleAction::kScheduleDestroyVersion:
      return "schedule-destroy-version";
    case LifecycleAction::kCancelDestroyVersion:
      return "cancel-destroy-version";
  }
  return "unknown";
}

}  // namespace kekd::keys
