// The ceremony executor: the one production door to keys::LifecycleMandate.
//
// Security model (DESIGN §3, §5; STYLE principle 8): a KEK lifecycle change needs a mandate, and
// this class is the only production code that can make one (it is the mandate's friend; tests use
// kekd::testing::MandateForTests). It does not trust its caller to have counted correctly: before
// it makes a mandate it verifies again, against the operator set the statement names, that at
// least `threshold` distinct members of that set have valid signatures over this ceremony's exact
// statement, and that the ceremony has reached the executing state. The mandate it makes names
// exactly the ceremony's action, key and version, and is spent on the spot.
#pragma once

#include <string>

#include "kekd/common/error.h"
#include "kekd/keys/keyring.h"
#include "kekd/quorum/ceremony.h"
#include "kekd/quorum/operator_set.h"

namespace kekd::quorum {

class CeremonyExecutor {
 public:
  explicit CeremonyExecutor(keys::Keyring& keyring) : keyring_(keyring) {}

  // Performs a key lifecycle ceremony (any action but set-operators, which changes no key) and
  // returns its one-line result, such as "rotated key payments to version 3". resume marks a
  // retry of a ceremony that may have been carried out in part (see LifecycleMandate::resume).
  // kFailedPrecondition if the ceremony is not executing or lacks a valid quorum; otherwise the
  // keyring's error.
  Result<std::string> execute(const Ceremony& ceremony, const OperatorSet& approving_set,
                              bool resume);

 private:
  keys::Keyring& keyring_;
};

// Counts the approvals of c that are by distinct members of approving_set and verify over c's
// statement. Exposed for the service and for tests.
std::uint32_t count_valid_approvals(const Ceremony& c, const OperatorSet& approving_set);

}  // namespace kekd::quorum
