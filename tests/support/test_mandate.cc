#include "support/test_mandate.h"

namespace kekd::testing {

using keys::LifecycleAction;
using keys::LifecycleMandate;

LifecycleMandate MandateForTests::create_key(std::string key) {
  return LifecycleMandate("test-ceremony", LifecycleAction::kCreateKey, std::move(key), 0,
                          std::nullopt);
}
LifecycleMandate MandateForTests::rotate_key(std::string key) {
  return LifecycleMandate("test-ceremony", LifecycleAction::kRotateKey, std::move(key), 0,
                          std::nullopt);
}
LifecycleMandate MandateForTests::disable(std::string key, std::uint32_t version) {
  return LifecycleMandate("test-ceremony", LifecycleAction::kDisableVersion, std::move(key),
                          version, std::nullopt);
}
LifecycleMandate MandateForTests::enable(std::string key, std::uint32_t version) {
  return LifecycleMandate("test-ceremony", LifecycleAction::kEnableVersion, std::move(key), version,
                          std::nullopt);
}
LifecycleMandate MandateForTests::schedule_destroy(std::string key, std::uint32_t version,
                                                   store::UnixMillis destroy_after) {
  return LifecycleMandate("test-ceremony", LifecycleAction::kScheduleDestroyVersion, std::move(key),
                          version, destroy_after);
}
LifecycleMandate MandateForTests::cancel_destroy(std::string key, std::uint32_t version) {
  return LifecycleMandate("test-ceremony", LifecycleAction::kCancelDestroyVersion, std::move(key),
                          version, std::nullopt);
}

}  // namespace kekd::testing
