// The capability that every KEK lifecycle change requires.
//
// Security model (DESIGN §3, §5): no single person can create, rotate, disable, enable or destroy
// a KEK; only a quorum ceremony approved by M of N operators can. The keyring enforces that by
// type: Keyring::apply takes a LifecycleMandate, and the only code that can construct one is the
// ceremony executor of quorum/, after it has verified the M-th approval. A mandate names one exact
// action on one key (and version), so it cannot be spent on anything else, and apply consumes it.
//
// Tests construct mandates through kekd::testing::MandateForTests, which is defined only under
// tests/; `grep -r MandateForTests src include` shows that production code has no other door.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "kekd/store/metadata_store.h"

namespace kekd::quorum {
class CeremonyExecutor;
}
namespace kekd::testing {
struct MandateForTests;
}

namespace kekd::keys {

enum class LifecycleAction {
  kCreateKey,
  kRotateKey,
  kDisableVersion,
  kEnableVersion,
  kScheduleDestroyVersion,
  kCancelDestroyVersion,
};

// "create-key", "rotate-key", ... as written in ceremony statements. Operators sign these names
// and the store persists them (quorum::action_name uses this table): never rename one.
std::string_view action_name(LifecycleAction action);

class LifecycleMandate {
 public:
  LifecycleMandate(LifecycleMandate&&) = default;
  LifecycleMandate& operator=(LifecycleMandate&&) = default;
  LifecycleMandate(const LifecycleMandate&) = delete;
  LifecycleMandate& operator=(const LifecycleMandate&) = delete;

  const std::string& ceremony_id() const { return ceremony_id_; }
  LifecycleAction action() const { return action_; }
  const std::string& key() const { return key_; }
  std::uint32_t version() const { return version_; }  // 0 for create-key and rotate-key
  // For kScheduleDestroyVersion: when the version is destroyed unless cancelled first.
  std::optional<store::UnixMillis> destroy_after() const { return destroy_after_; }
  // Set only when the executor resumes a ceremony that may have been carried out in part
  // already (start-up reconciliation after a crash, a retry after the HSM was unavailable).
  // Keyring::apply then finishes the action instead of refusing what the earlier attempt did:
  // a version this ceremony created already counts as done, a token object with the label the
  // action would generate is adopted, and a version already in the target state is left as is.
  bool resume() const { return resume_; }

 private:
  friend class kekd::quorum::CeremonyExecutor;
  friend struct kekd::testing::MandateForTests;

  LifecycleMandate(std::string ceremony_id, LifecycleAction action, std::string key,
                   std::uint32_t version, std::optional<store::UnixMillis> destroy_after,
                   bool resume = false)
      : ceremony_id_(std::move(ceremony_id)),
        action_(action),
        key_(std::move(key)),
        version_(version),
        destroy_after_(destroy_after),
        resume_(resume) {}

  std::string ceremony_id_;
  LifecycleAction action_;
  std::string key_;
  std::uint32_t version_;
  std::optional<store::UnixMillis> destroy_after_;
  bool resume_;
};

}  // namespace kekd::keys
