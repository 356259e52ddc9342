#include "kekd/quorum/ceremony_service.h"

#include <algorithm>

#include "kekd/keys/key_name.h"
#include "kekd/quorum/transcript.h"

namespace kekd::quorum {
namespace {

constexpr UnixMillis kMaxTtl = 30 * kDayMillis;
// A destroy-after far beyond any waiting period anyone means is a typo, not a plan.
constexpr UnixMillis kMaxDestroyDelay = 3650 * kDayMillis;
constexpr std::size_t kMaxResultChars = 1000;
// The result of every open ceremony that a set-operators ceremony cancels.
constexpr std::string_view kSetChangedResult = "operator set changed";

// Statements carry whole seconds (RFC 3339 without fractions).
UnixMillis whole_seconds(UnixMillis t) { return t - (((t % 1000) + 1000) % 1000); }

// A result line for the store and the transcript: printable ASCII on one bounded line, whatever
// a lower layer's message held.
std::string one_line(std::string_view text) {
  std::string out(text.substr(0, kMaxResultChars));
  for (char& c : out) {
    if (c < 0x20 || c > 0x7e) {
      c = ' ';
    }
  }
  return out.empty() ? std::string("(no detail)") : out;
}

ByteView bytes_of(const std::string& s) {
  return ByteView(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
}

Error superfluous(Action action, std::string_view field) {
  return Error(Code::kInvalidArgument,
               std::string(action_name(action)) + " takes no " + std::string(field));
}

// Only ids that could be real are echoed back; anything else is not repeated into messages.
std::string shown_id(std::string_view id) {
  return validate_ceremony_id(id).ok() ? "'" + std::string(id) + "'" : "with this id";
}

const store::KeyVersionRecord* find_version(const store::KeyRecord& record, std::uint32_t version) {
  for (const store::KeyVersionRecord& v : record.versions) {
    if (v.version == version) {
      return &v;
    }
  }
  return nullptr;
}

// The version states each state-changing action starts from (docs/keys.md).
bool transition_allowed(Action action, store::KeyState from) {
  using store::KeyState;
  switch (action) {
    case Action::kDisableVersion:
      return from == KeyState::kEnabled;
    case Action::kEnableVersion:
      return from == KeyState::kDisabled;
    case Action::kScheduleDestroyVersion:
      return from == KeyState::kEnabled || from == KeyState::kDisabled;
    case Action::kCancelDestroyVersion:
      return from == KeyState::kDestroyScheduled;
    default:
      return false;
  }
}

bool is_transient(const Error& error) { return error.code() == Code::kUnavailable; }

}  // namespace

Result<std::unique_ptr<CeremonyService>> CeremonyService::open(store::CeremonyStore& store,
                                                               keys::Keyring& keyring,
                                                               hsm::Hsm& hsm,
                                                               CeremonyOptions options,
                                                               Clock clock) {
  if (!clock) {
    return Error(Code::kInvalidArgument, "ceremony service: no clock");
  }
  if (options.ttl < 1000 || options.ttl > kMaxTtl) {
    return Error(Code::kInvalidArgument, "ceremony.ttl must be between 1s and 30d");
  }
  if (options.min_destroy_delay < 0 || options.default_destroy_delay < options.min_destroy_delay ||
      options.default_destroy_delay > kMaxDestroyDelay) {
    return Error(Code::kInvalidArgument,
                 "ceremony destroy delays: need 0 <= min_destroy_delay <= default_destroy_delay "
                 "<= 3650d");
  }
  return std::unique_ptr<CeremonyService>(
      new CeremonyService(store, keyring, hsm, options, std::move(clock)));
}

// ---- operator sets -----------------------------------------------------------------------

Status CeremonyService::init_operators(const OperatorSet& set) {
  std::lock_guard lock(mu_);
  // Structural rules only: the threshold-1 rule belongs to make_operator_set and its caller's
  // force flag (kekd init --force).
  KEKD_ASSIGN_OR_RETURN(OperatorSet checked, make_operator_set(set.operators, set.threshold,
                                                               /*force_single_approver=*/true));
  return store_.init_operator_set(
      store::OperatorSetRecord{checked.hash(), checked.canonical(), checked.threshold}, clock_());
}

Result<OperatorSet> CeremonyService::operators() {
  std::lock_guard lock(mu_);
  return current_set();
}

Result<OperatorSet> CeremonyService::current_set() {
  KEKD_ASSIGN_OR_RETURN(std::optional<store::OperatorSetRecord> record,
                        store_.current_operator_set());
  if (!record) {
    return Error(Code::kFailedPrecondition, "kekd has no operator set yet; run kekd init");
  }
  return load_set(record->hash);
}

Result<OperatorSet> CeremonyService::load_set(std::string_view hash) {
  KEKD_ASSIGN_OR_RETURN(std::optional<store::OperatorSetRecord> record,
                        store_.find_operator_set(hash));
  if (!record) {
    return Error(Code::kInternal, "store: operator set " + std::string(hash) + " is missing");
  }
  // What the store returns is checked like any input: the set must hash to its name.
  Result<OperatorSet> set = parse_operator_set(record->canonical);
  if (!set.ok() || set->hash() != hash || set->threshold != record->threshold) {
    return Error(Code::kInternal, "store: operator set " + std::string(hash) + " is damaged");
  }
  return set;
}

// ---- proposals ---------------------------------------------------------------------------

Result<std::string> CeremonyService::new_id() {
  KEKD_ASSIGN_OR_RETURN(SecretBytes random, hsm_.random(16));
  return to_hex(random);
}

Status CeremonyService::check_key_action(Statement& t, const Proposal& p) {
  if (p.operators) return superfluous(t.action, "operators");
  if (p.threshold) return superfluous(t.action, "threshold");
  if (p.force) return superfluous(t.action, "force");
  if (p.version && !action_has_version(t.action)) return superfluous(t.action, "version");
  if (p.destroy_after && !action_has_destroy_after(t.action)) {
    return superfluous(t.action, "destroy_after");
  }
  if (!p.key) {
    return Error(Code::kInvalidArgument, std::string(action_name(t.action)) + " needs a key");
  }
  KEKD_RETURN_IF_ERROR(keys::validate_key_name(*p.key));
  t.key = *p.key;

  Result<keys::KeyInfo> info = keyring_.describe(t.key);
  if (t.action == Action::kCreateKey) {
    if (info.ok()) {
      return Error(Code::kAlreadyExists, "key '" + t.key + "' already exists");
    }
    return ok_status();
  }
  if (!info.ok()) {
    return info.error();
  }
  if (t.action == Action::kRotateKey) {
    return ok_status();
  }

  if (!p.version || *p.version == 0) {
    return Error(Code::kInvalidArgument,
                 std::string(action_name(t.action)) + " needs a version (1, 2, ...)");
  }
  const store::KeyVersionRecord* version = find_version(info->record, *p.version);
  if (version == nullptr) {
    return Error(Code::kNotFound,
                 "key '" + t.key + "' has no version " + std::to_string(*p.version));
  }
  if (!transition_allowed(t.action, version->state)) {
    return Error(Code::kFailedPrecondition, "version " + std::to_string(*p.version) + " of key '" +
                                                t.key + "' is " +
                                                std::string(store::state_name(version->state)) +
                                                "; cannot " + std::string(action_name(t.action)));
  }
  t.version = *p.version;

  if (t.action == Action::kScheduleDestroyVersion) {
    UnixMillis destroy_after = whole_seconds(t.proposed_at + options_.default_destroy_delay);
    if (p.destroy_after) {
      if (*p.destroy_after % 1000 != 0) {
        return Error(Code::kInvalidArgument, "destroy_after must be a whole second");
      }
      destroy_after = *p.destroy_after;
    }
    const UnixMillis earliest = t.proposed_at + options_.min_destroy_delay;
    if (destroy_after < earliest) {
      return Error(Code::kInvalidArgument,
                   "destroy_after must be at least the configured minimum delay after the "
                   "proposal: not before " +
                       format_rfc3339(earliest + 999));
    }
    if (destroy_after > t.proposed_at + kMaxDestroyDelay) {
      return Error(Code::kInvalidArgument, "destroy_after must be within 3650 days");
    }
    t.destroy_after = destroy_after;
  }
  return ok_status();
}

Status CeremonyService::check_set_operators(Statement& t, const Proposal& p,
                                            const OperatorSet& current) {
  if (p.key) return superfluous(t.action, "key");
  if (p.version) return superfluous(t.action, "version");
  if (p.destroy_after) return superfluous(t.action, "destroy_after");
  if (!p.operators || !p.threshold) {
    return Error(Code::kInvalidArgument, "set-operators needs operators and a threshold");
  }
  KEKD_ASSIGN_OR_RETURN(OperatorSet proposed,
                        make_operator_set(*p.operators, *p.threshold, p.force));
  if (proposed.hash() == current.hash()) {
    return Error(Code::kFailedPrecondition, "the proposed operator set is the one in force");
  }
  t.new_operators = std::move(proposed);
  return ok_status();
}

Result<Ceremony> CeremonyService::propose(const Proposal& p, std::string_view principal) {
  std::lock_guard lock(mu_);
  KEKD_RETURN_IF_ERROR(validate_principal(principal));
  std::optional<Action> action = parse_action(p.action);
  if (!action) {
    return Error(Code::kInvalidArgument,
                 "unknown action; expected create-key, rotate-key, disable-version, "
                 "enable-version, schedule-destroy-version, cancel-destroy-version or "
                 "set-operators");
  }
  KEKD_ASSIGN_OR_RETURN(OperatorSet current, current_set());

  Statement t;
  t.action = *action;
  t.operator_set = current.hash();
  t.threshold = current.threshold;
  t.proposed_by = std::string(principal);
  t.proposed_at = whole_seconds(clock_());
  t.expires_at = whole_seconds(t.proposed_at + options_.ttl);
  if (t.action == Action::kSetOperators) {
    KEKD_RETURN_IF_ERROR(check_set_operators(t, p, current));
  } else {
    KEKD_RETURN_IF_ERROR(check_key_action(t, p));
  }
  KEKD_ASSIGN_OR_RETURN(t.id, new_id());
  KEKD_ASSIGN_OR_RETURN(std::string text, format_statement(t));

  // The store refuses a second ceremony in flight for the key and a set that is no longer in
  // force, atomically with the insert.
  store::CeremonyRecord record;
  record.id = t.id;
  record.action = std::string(action_name(t.action));
  record.key = t.key;
  record.state = CeremonyState::kOpen;
  record.operator_set_hash = t.operator_set;
  record.threshold = t.threshold;
  record.statement = text;
  record.proposed_by = t.proposed_by;
  record.created_at = t.proposed_at;
  record.expires_at = t.expires_at;
  KEKD_RETURN_IF_ERROR(store_.create_ceremony(record));
  return Ceremony{std::move(t), std::move(text), CeremonyState::kOpen, {}, {}, {}};
}

// ---- approvals, cancellation, expiry -------------------------------------------------------

Result<Ceremony> CeremonyService::load(std::string_view id) {
  KEKD_ASSIGN_OR_RETURN(std::optional<store::CeremonyRecord> record, store_.find_ceremony(id));
  if (!record) {
    return Error(Code::kNotFound, "no ceremony " + shown_id(id));
  }
  return ceremony_from_record(*record);
}

Status CeremonyService::record_step(std::string action, const Ceremony& c,
                                    std::optional<Code> error) {
  if (audit_ == nullptr) {
    return ok_status();
  }
  audit::AuditEvent event;
  event.principal = "kekd";
  event.action = std::move(action);
  if (!c.terms.key.empty()) event.key = c.terms.key;
  event.version = c.terms.version;
  event.subject = c.id();
  event.error = error;
  return audit_->record(std::move(event));
}

Status CeremonyService::expire(const Ceremony& c) {
  // finished-at is the moment it expired, whenever kekd noticed.
  KEKD_RETURN_IF_ERROR(store_.finish_ceremony(
      c.id(), CeremonyState::kOpen, CeremonyState::kExpired, c.terms.expires_at,
      "expired with " + std::to_string(c.approvals.size()) + " of " +
          std::to_string(c.terms.threshold) + " approvals"));
  return record_step("ceremony.expire", c, std::nullopt);
}

Result<Ceremony> CeremonyService::approve(std::string_view id, std::string_view operator_name,
                                          ByteView signature) {
  std::lock_guard lock(mu_);
  KEKD_ASSIGN_OR_RETURN(Ceremony c, load(id));
  if (c.state != CeremonyState::kOpen) {
    return Error(Code::kFailedPrecondition, "ceremony " + c.id() + " is " +
                                                std::string(store::ceremony_state_name(c.state)) +
                                                "; it takes no approvals");
  }
  const UnixMillis now = clock_();
  if (now >= c.terms.expires_at) {
    KEKD_RETURN_IF_ERROR(expire(c));
    return Error(Code::kFailedPrecondition,
                 "ceremony " + c.id() + " expired at " + format_rfc3339(c.terms.expires_at));
  }
  KEKD_ASSIGN_OR_RETURN(OperatorSet approving, load_set(c.terms.operator_set));
  const Operator* op = approving.find(operator_name);
  if (op == nullptr) {
    std::string who = validate_operator_name(operator_name).ok()
                          ? "'" + std::string(operator_name) + "'"
                          : std::string("the operator named");
    return Error(Code::kUnknownOperator, who + " is not a member of the operator set " +
                                             c.terms.operator_set + " that must approve ceremony " +
                                             c.id());
  }
  for (const Approval& a : c.approvals) {
    if (a.operator_name == op->name) {
      return Error(Code::kDuplicateApproval,
                   "operator '" + op->name + "' has already approved ceremony " + c.id());
    }
  }
  KEKD_RETURN_IF_ERROR(verify_signature(*op, bytes_of(c.statement), signature));

  KEKD_ASSIGN_OR_RETURN(
      store::CeremonyRecord record,
      store_.add_approval(
          c.id(), store::ApprovalRecord{op->name, Bytes(signature.begin(), signature.end()), now}));
  KEKD_ASSIGN_OR_RETURN(Ceremony updated, ceremony_from_record(record));
  if (updated.state != CeremonyState::kExecuting) {
    return updated;
  }
  return execute(updated, /*resume=*/false);
}

Result<Ceremony> CeremonyService::cancel(std::string_view id, std::string_view principal) {
  std::lock_guard lock(mu_);
  KEKD_RETURN_IF_ERROR(validate_principal(principal));
  KEKD_ASSIGN_OR_RETURN(Ceremony c, load(id));
  if (c.state != CeremonyState::kOpen) {
    return Error(Code::kFailedPrecondition, "ceremony " + c.id() + " is " +
                                                std::string(store::ceremony_state_name(c.state)) +
                                                "; it cannot be cancelled");
  }
  const UnixMillis now = clock_();
  if (now >= c.terms.expires_at) {
    KEKD_RETURN_IF_ERROR(expire(c));
    return Error(Code::kFailedPrecondition,
                 "ceremony " + c.id() + " expired at " + format_rfc3339(c.terms.expires_at));
  }
  KEKD_RETURN_IF_ERROR(store_.finish_ceremony(c.id(), CeremonyState::kOpen,
                                              CeremonyState::kCancelled, now,
                                              "cancelled by " + std::string(principal)));
  return load(id);
}

// ---- execution ---------------------------------------------------------------------------

Result<Ceremony> CeremonyService::execute(const Ceremony& c, bool resume) {
  KEKD_ASSIGN_OR_RETURN(OperatorSet approving, load_set(c.terms.operator_set));
  Result<std::string> outcome = Error(Code::kInternal, "not executed");
  if (c.terms.action == Action::kSetOperators) {
    // No mandate here: the store carries it out in one commit. The quorum is checked again all
    // the same, exactly as the executor checks it for key actions.
    if (count_valid_approvals(c, approving) < c.terms.threshold) {
      outcome = Error(Code::kFailedPrecondition,
                      "ceremony " + c.id() + " lacks a valid quorum of its operator set");
    } else {
      const OperatorSet& next = *c.terms.new_operators;
      std::string result = "installed operator set " + next.hash() + " (" +
                           std::to_string(next.threshold) + " of " +
                           std::to_string(next.operators.size()) + ")";
      Status changed = store_.change_operator_set(
          c.id(), store::OperatorSetRecord{next.hash(), next.canonical(), next.threshold}, clock_(),
          result, kSetChangedResult);
      if (changed.ok()) {
        KEKD_RETURN_IF_ERROR(record_step("ceremony.execute", c, std::nullopt));
        return load(c.id());
      }
      outcome = changed.error();
    }
  } else {
    outcome = executor_.execute(c, approving, resume);
  }

  if (outcome.ok()) {
    // Failing here leaves the ceremony executing with its action done; the next attempt is a
    // resume, which the keyring recognises as done.
    KEKD_RETURN_IF_ERROR(store_.finish_ceremony(
        c.id(), CeremonyState::kExecuting, CeremonyState::kExecuted, clock_(), one_line(*outcome)));
    KEKD_RETURN_IF_ERROR(record_step("ceremony.execute", c, std::nullopt));
  } else if (is_transient(outcome.error())) {
    return outcome.error();  // stays executing; tick() retries
  } else {
    KEKD_RETURN_IF_ERROR(store_.finish_ceremony(c.id(), CeremonyState::kExecuting,
                                                CeremonyState::kFailed, clock_(),
                                                one_line(outcome.error().message())));
    KEKD_RETURN_IF_ERROR(record_step("ceremony.execute", c, outcome.error().code()));
  }
  return load(c.id());
}

Status CeremonyService::execute_all_executing() {
  KEKD_ASSIGN_OR_RETURN(std::vector<store::CeremonyRecord> executing,
                        store_.list_ceremonies(CeremonyState::kExecuting));
  Status first;
  for (const store::CeremonyRecord& record : executing) {
    Result<Ceremony> c = ceremony_from_record(record);
    Result<Ceremony> done = c.ok() ? execute(*c, /*resume=*/true) : c;
    if (!done.ok() && first.ok()) {
      first = done.error();
    }
  }
  return first;
}

Status CeremonyService::reconcile() {
  std::lock_guard lock(mu_);
  return execute_all_executing();
}

Status CeremonyService::tick() {
  std::lock_guard lock(mu_);
  const UnixMillis now = clock_();
  Status first;
  auto keep_first = [&first](const Status& s) {
    if (!s.ok() && first.ok()) {
      first = s;
    }
  };
  Result<std::vector<store::CeremonyRecord>> open = store_.list_ceremonies(CeremonyState::kOpen);
  if (open.ok()) {
    for (const store::CeremonyRecord& record : *open) {
      if (now < record.expires_at) {
        continue;
      }
      Result<Ceremony> c = ceremony_from_record(record);
      keep_first(c.ok() ? expire(*c) : Status(c.error()));
    }
  } else {
    keep_first(open.error());
  }
  keep_first(execute_all_executing());
  Result<int> destroyed =
      keyring_.destroy_due(now, [&](const std::string& name, std::uint32_t version) {
        if (audit_ == nullptr) return;
        audit::AuditEvent event;
        event.principal = "kekd";
        event.action = "key.destroy";
        event.key = name;
        event.version = version;
        keep_first(audit_->record(std::move(event)));
      });
  if (!destroyed.ok()) {
    keep_first(destroyed.error());
  }
  return first;
}

// ---- reading -----------------------------------------------------------------------------

Result<Ceremony> CeremonyService::get(std::string_view id) {
  std::lock_guard lock(mu_);
  return load(id);
}

Result<std::vector<Ceremony>> CeremonyService::list(std::optional<CeremonyState> state) {
  std::lock_guard lock(mu_);
  KEKD_ASSIGN_OR_RETURN(std::vector<store::CeremonyRecord> records, store_.list_ceremonies(state));
  if (state == CeremonyState::kOpen) {
    KEKD_ASSIGN_OR_RETURN(std::vector<store::CeremonyRecord> executing,
                          store_.list_ceremonies(CeremonyState::kExecuting));
    records.insert(records.end(), executing.begin(), executing.end());
    std::stable_sort(records.begin(), records.end(), [](const auto& a, const auto& b) {
      return a.created_at != b.created_at ? a.created_at < b.created_at : a.id < b.id;
    });
  }
  std::vector<Ceremony> out;
  out.reserve(records.size());
  for (const store::CeremonyRecord& record : records) {
    KEKD_ASSIGN_OR_RETURN(Ceremony c, ceremony_from_record(record));
    out.push_back(std::move(c));
  }
  return out;
}

Result<std::size_t> CeremonyService::open_count() {
  std::lock_guard lock(mu_);
  KEKD_ASSIGN_OR_RETURN(std::vector<store::CeremonyRecord> open,
                        store_.list_ceremonies(CeremonyState::kOpen));
  KEKD_ASSIGN_OR_RETURN(std::vector<store::CeremonyRecord> executing,
                        store_.list_ceremonies(CeremonyState::kExecuting));
  return open.size() + executing.size();
}

Result<std::string> CeremonyService::transcript_document(const Ceremony& c,
                                                         std::string_view signer_fingerprint) {
  std::lock_guard lock(mu_);
  KEKD_ASSIGN_OR_RETURN(std::optional<store::OperatorSetRecord> set,
                        store_.find_operator_set(c.terms.operator_set));
  if (!set) {
    return Error(Code::kInternal, "store: operator set " + c.terms.operator_set + " is missing");
  }
  return format_transcript(c, set->canonical, signer_fingerprint);
}

}  // namespace kekd::quorum
