// The ceremony service: proposals, approvals, cancellation, expiry, execution and start-up
// reconciliation of quorum ceremonies (DESIGN §5; docs/ceremony-formats.md).
//
// Security model:
// - Nothing changes a key or the operator set but a ceremony that M members of the operator set
//   named in its statement have approved, each with a valid signature over that exact statement.
//   The id inside the statement is 128 bits from the token's RNG, so an approval of one ceremony
//   never verifies for another.
// - Every rejected request (unknown ceremony or operator, duplicate approval, bad signature,
//   wrong state) changes nothing. The one exception is deliberate: a request that finds an open
//   ceremony past its expiry records it as expired before refusing.
// - The M-th approval and the move to `executing` commit together, before the HSM is touched.
//   Execution is idempotent when resumed (reconcile() at start-up, tick() after an outage), so a
//   crash at any point ends with exactly one result, never a KEK without a record or a record
//   without a KEK (Keyring::apply).
// - A set-operators ceremony replaces the set in one commit and cancels every other open
//   ceremony ("operator set changed"): nothing proposed under the old set can still complete
//   with approvals collected from it. Approvals are always checked against the set a ceremony
//   names, never the set in force.
//
// Thread-safe: one operation at a time per service. Several replicas sharing a store are kept
// consistent by the store's transactions (store/ceremony_store.h).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kekd/audit/sink.h"
#include "kekd/common/error.h"
#include "kekd/common/time.h"
#include "kekd/hsm/hsm.h"
#include "kekd/keys/keyring.h"
#include "kekd/quorum/ceremony.h"
#include "kekd/quorum/ceremony_executor.h"
#include "kekd/quorum/operator_set.h"
#include "kekd/store/ceremony_store.h"

namespace kekd::quorum {

inline constexpr UnixMillis kHourMillis = 3'600'000;
inline constexpr UnixMillis kDayMillis = 24 * kHourMillis;

struct CeremonyOptions {
  UnixMillis ttl = 24 * kHourMillis;                   // proposal to expiry; 1 s .. 30 days
  UnixMillis min_destroy_delay = 7 * kDayMillis;       // earliest destroy-after, from proposal
  UnixMillis default_destroy_delay = 30 * kDayMillis;  // destroy-after when none is given
};

// What the ceremony administrator proposes (the body of POST /v1/ceremonies). Fields an action
// does not use must be absent: kInvalidArgument otherwise, as for unknown JSON members.
struct Proposal {
  std::string action;                                   // "create-key", ..., "set-operators"
  std::optional<std::string> key = {};                  // every action but set-operators
  std::optional<std::uint32_t> version = {};            // the four version state changes
  std::optional<UnixMillis> destroy_after = {};         // schedule-destroy-version; default +30 d
  std::optional<std::vector<Operator>> operators = {};  // set-operators: the proposed members
  std::optional<std::uint32_t> threshold = {};          // set-operators: the proposed M
  bool force = false;                                   // set-operators: allow M = 1 with N > 1
};

class CeremonyService {
 public:
  using Clock = std::function<UnixMillis()>;

  // The store, keyring and hsm must outlive the service. The hsm provides ceremony ids. Does not
  // reconcile: the daemon calls reconcile() once before it serves.
  static Result<std::unique_ptr<CeremonyService>> open(store::CeremonyStore& store,
                                                       keys::Keyring& keyring, hsm::Hsm& hsm,
                                                       CeremonyOptions options, Clock clock);

  // Where the steps kekd takes by itself are recorded (docs/audit.md): "ceremony.execute" when an
  // execution ends (executed, or failed for good), "ceremony.expire", and "key.destroy" for each
  // version destroyed when its destroy-after passes. The API records the steps requested over
  // HTTP. A record that fails is logged and returned from the call that took the step; the step
  // itself stands. Set once, before the service is used; none while null.
  void set_audit_sink(audit::AuditSink* sink) { audit_ = sink; }

  // Installs the genesis operator set (kekd init). The set must come from make_operator_set,
  // which applies the threshold-1 rule with the caller's force flag. kFailedPrecondition if a
  // set is installed already.
  Status init_operators(const OperatorSet& set);

  // The set in force. kFailedPrecondition before init_operators.
  Result<OperatorSet> operators();

  // Validates the proposal against the current keys and set and opens a ceremony. kInvalidArgument
  // for an unknown action or a malformed or superfluous field; kNotFound for an unknown key or
  // version; kAlreadyExists for create-key of an existing key; kFailedPrecondition when the
  // version's state forbids the action, a ceremony for the key (or a set-operators ceremony) is
  // already open, or kekd has no operator set yet.
  Result<Ceremony> propose(const Proposal& proposal, std::string_view principal);

  // Accepts one operator's approval. kNotFound (ceremony), kFailedPrecondition (not open or
  // expired), kUnknownOperator, kDuplicateApproval, kSignatureRejected; none of these changes
  // anything. The M-th approval executes the ceremony and returns it executed, or failed if the
  // keyring refused for good (the reason is its result); if the HSM or store is unavailable the
  // approval stands, the ceremony stays executing, the error is returned, and tick() retries.
  Result<Ceremony> approve(std::string_view id, std::string_view operator_name, ByteView signature);

  // Cancels an open ceremony. kFailedPrecondition once it is executing or finished.
  Result<Ceremony> cancel(std::string_view id, std::string_view principal);

  Result<Ceremony> get(std::string_view id);

  // Oldest first. A filter of kOpen also returns executing ceremonies, which clients see as
  // open; std::nullopt returns all.
  Result<std::vector<Ceremony>> list(std::optional<CeremonyState> state);

  // Ceremonies open or executing.
  Result<std::size_t> open_count();

  // Finishes every executing ceremony (start-up, after a crash). Returns the first error, after
  // trying them all.
  Status reconcile();

  // Periodic duties (the daemon calls it every second): expires open ceremonies past their
  // expiry, retries executing ones, destroys KEK versions whose destroy-after has passed.
  // Returns the first error, after trying everything.
  Status tick();

  // The transcript document of a ceremony (transcript.h), without kekd's signature;
  // signer_fingerprint is that of kekd's audit public key, which the daemon signs with.
  Result<std::string> transcript_document(const Ceremony& ceremony,
                                          std::string_view signer_fingerprint);

 private:
  CeremonyService(store::CeremonyStore& store, keys::Keyring& keyring, hsm::Hsm& hsm,
                  CeremonyOptions options, Clock clock)
      : store_(store),
        keyring_(keyring),
        hsm_(hsm),
        executor_(keyring),
        options_(options),
        clock_(std::move(clock)) {}

  Result<Ceremony> load(std::string_view id);
  Result<OperatorSet> load_set(std::string_view hash);
  Result<OperatorSet> current_set();
  Status check_key_action(Statement& terms, const Proposal& p);
  Status check_set_operators(Statement& terms, const Proposal& p, const OperatorSet& current);
  Result<std::string> new_id();
  // Records an open ceremony found past its expiry as expired.
  Status expire(const Ceremony& c);
  // Carries out an executing ceremony and records its outcome; returns it as stored after.
  Result<Ceremony> execute(const Ceremony& c, bool resume);
  Status execute_all_executing();
  // Records one step kekd took by itself (principal "kekd", no request id).
  Status record_step(std::string action, const Ceremony& c, std::optional<Code> error);

  std::mutex mu_;
  store::CeremonyStore& store_;
  keys::Keyring& keyring_;
  hsm::Hsm& hsm_;
  CeremonyExecutor executor_;
  CeremonyOptions options_;
  Clock clock_;
  audit::AuditSink* audit_ = nullptr;
};

}  // namespace kekd::quorum
