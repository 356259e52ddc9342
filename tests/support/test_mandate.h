// The test-only door to LifecycleMandate (see kekd/keys/lifecycle_mandate.h). Production code
// gets mandates only from quorum::CeremonyExecutor.
#pragma once

#include "kekd/keys/lifecycle_mandate.h"

namespace kekd::testing {

struct MandateForTests {
  static keys::LifecycleMandate create_key(std::string key);
  static keys::LifecycleMandate rotate_key(std::string key);
  static keys::LifecycleMandate disable(std::string key, std::uint32_t version);
  static keys::LifecycleMandate enable(std::string key, std::uint32_t version);
  static keys::LifecycleMandate schedule_destroy(std::string key, std::uint32_t version,
                                                 store::UnixMillis destroy_after);
  static keys::LifecycleMandate cancel_destroy(std::string key, std::uint32_t version);
};

}  // namespace kekd::testing
