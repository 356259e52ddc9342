#include "kekd/quorum/ceremony_executor.h"

#include <set>

#include "kekd/keys/lifecycle_mandate.h"

namespace kekd::quorum {
namespace {

using keys::LifecycleAction;

// The version a create-key or rotate-key ceremony made: the one recorded with its id.
std::uint32_t version_made_by(const keys::KeyInfo& info, const std::string& ceremony_id) {
  for (const store::KeyVersionRecord& v : info.record.versions) {
    if (v.ceremony_id == ceremony_id) {
      return v.version;
    }
  }
  return 0;
}

std::string result_line(const Statement& t, const keys::KeyInfo& info) {
  const std::string version = t.version ? std::to_string(*t.version) : "";
  switch (t.action) {
    case Action::kCreateKey:
      return "created key " + t.key + " version " + std::to_string(version_made_by(info, t.id));
    case Action::kRotateKey:
      return "rotated key " + t.key + " to version " + std::to_string(version_made_by(info, t.id));
    case Action::kDisableVersion:
      return "disabled key " + t.key + " version " + version;
    case Action::kEnableVersion:
      return "enabled key " + t.key + " version " + version;
    case Action::kScheduleDestroyVersion:
      return "scheduled destruction of key " + t.key + " version " + version + " at " +
             format_rfc3339(t.destroy_after.value_or(0));
    case Action::kCancelDestroyVersion:
      return "cancelled destruction of key " + t.key + " version " + version +
             "; the version is disabled";
    case Action::kSetOperators:
      break;
  }
  return "done";
}

}  // namespace

std::uint32_t count_valid_approvals(const Ceremony& c, const OperatorSet& approving_set) {
  std::set<std::string, std::less<>> counted;
  for (const Approval& a : c.approvals) {
    const Operator* op = approving_set.find(a.operator_name);
    if (op != nullptr && !counted.contains(a.operator_name) &&
        verify_signature(
            *op,
            ByteView(reinterpret_cast<const std::uint8_t*>(c.statement.data()), c.statement.size()),
            a.signature)
            .ok()) {
      counted.insert(a.operator_name);
    }
  }
  return static_cast<std::uint32_t>(counted.size());
}

Result<std::string> CeremonyExecutor::execute(const Ceremony& c, const OperatorSet& approving_set,
                                              bool resume) {
  std::optional<LifecycleAction> action = lifecycle_action(c.terms.action);
  if (!action) {
    return Error(Code::kInternal, "ceremony " + c.id() + ": " +
                                      std::string(action_name(c.terms.action)) +
                                      " changes no key; it is not executed through the keyring");
  }
  if (c.state != CeremonyState::kExecuting) {
    return Error(Code::kFailedPrecondition, "ceremony " + c.id() + " is " +
                                                std::string(store::ceremony_state_name(c.state)) +
                                                ", not executing");
  }
  if (approving_set.hash() != c.terms.operator_set ||
      approving_set.threshold != c.terms.threshold ||
      count_valid_approvals(c, approving_set) < c.terms.threshold) {
    return Error(Code::kFailedPrecondition,
                 "ceremony " + c.id() + " lacks a valid quorum of its operator set");
  }
  keys::LifecycleMandate mandate(c.id(), *action, c.terms.key, c.terms.version.value_or(0),
                                 c.terms.destroy_after, resume);
  KEKD_ASSIGN_OR_RETURN(keys::KeyInfo info, keyring_.apply(std::move(mandate)));
  return result_line(c.terms, info);
}

}  // namespace kekd::quorum
