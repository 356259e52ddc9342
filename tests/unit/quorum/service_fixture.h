// A CeremonyService over a KeyringHarness (real SQLite store, the given Hsm, a clock the test
// controls), with operator keys that sign like openssl does. Used by the unit tests (MemoryHsm)
// and the integration tests (SoftHSM).
#pragma once

#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "kekd/quorum/ceremony_service.h"
#include "support/keyring_harness.h"
#include "unit/quorum/operator_keys.h"

namespace kekd::testing {

// Forwards to a real store, and can be told to fail finishing ceremonies: the moment after the
// keyring committed and before the ceremony is recorded executed, as a crash would leave it.
class FlakyCeremonyStore final : public store::CeremonyStore {
 public:
  explicit FlakyCeremonyStore(store::CeremonyStore& real) : real_(real) {}

  bool fail_finish = false;

  Result<std::optional<store::OperatorSetRecord>> current_operator_set() override {
    return real_.current_operator_set();
  }
  Result<std::optional<store::OperatorSetRecord>> find_operator_set(
      std::string_view hash) override {
    return real_.find_operator_set(hash);
  }
  Result<std::vector<store::OperatorSetChange>> operator_set_history() override {
    return real_.operator_set_history();
  }
  Status init_operator_set(const store::OperatorSetRecord& set, UnixMillis at) override {
    return real_.init_operator_set(set, at);
  }
  Status create_ceremony(const store::CeremonyRecord& c) override {
    return real_.create_ceremony(c);
  }
  Result<std::optional<store::CeremonyRecord>> find_ceremony(std::string_view id) override {
    return real_.find_ceremony(id);
  }
  Result<std::vector<store::CeremonyRecord>> list_ceremonies(
      std::optional<store::CeremonyState> state) override {
    return real_.list_ceremonies(state);
  }
  Result<store::CeremonyRecord> add_approval(std::string_view id,
                                             const store::ApprovalRecord& a) override {
    return real_.add_approval(id, a);
  }
  Status finish_ceremony(std::string_view id, store::CeremonyState from, store::CeremonyState to,
                         UnixMillis at, std::string_view result) override {
    if (fail_finish) {
      return Error(Code::kUnavailable, "store: injected failure");
    }
    return real_.finish_ceremony(id, from, to, at, result);
  }
  Status change_operator_set(std::string_view id, const store::OperatorSetRecord& set,
                             UnixMillis at, std::string_view result,
                             std::string_view cancel_result) override {
    if (fail_finish) {
      return Error(Code::kUnavailable, "store: injected failure");
    }
    return real_.change_operator_set(id, set, at, result, cancel_result);
  }

 private:
  store::CeremonyStore& real_;
};

struct QuorumHarness {
  // Operators alice (Ed25519), bob (ECDSA P-256), carol (Ed25519); threshold 2.
  explicit QuorumHarness(hsm::Hsm& hsm, quorum::CeremonyOptions options = {})
      : QuorumHarness(hsm,
                      {OperatorKey::ed25519("alice"), OperatorKey::ecdsa("bob"),
                       OperatorKey::ed25519("carol")},
                      2, options) {}

  QuorumHarness(hsm::Hsm& hsm, std::vector<OperatorKey> keys, std::uint32_t threshold,
                quorum::CeremonyOptions options = {})
      : token(hsm), h(hsm), keys(std::move(keys)), options(options), flaky(h.store()) {
    service = open_service(flaky);
    std::vector<quorum::Operator> ops;
    for (const OperatorKey& k : this->keys) {
      ops.push_back(k.op());
    }
    auto set = quorum::make_operator_set(ops, threshold, false);
    REQUIRE_MESSAGE(set.ok(), set.error().to_string());
    auto init = service->init_operators(*set);
    REQUIRE_MESSAGE(init.ok(), init.error().to_string());
  }

  // A second service on the same store and keyring, as after a restart.
  std::unique_ptr<quorum::CeremonyService> open_service(store::CeremonyStore& store) {
    auto opened =
        quorum::CeremonyService::open(store, h.keyring(), token, options, [this] { return h.now; });
    REQUIRE_MESSAGE(opened.ok(), opened.error().to_string());
    return std::move(*opened);
  }

  const OperatorKey& key(std::string_view name) const {
    for (const OperatorKey& k : keys) {
      if (k.name() == name) return k;
    }
    FAIL("no operator key " << name);
    return keys.front();
  }

  quorum::Ceremony propose(quorum::Proposal p) {
    auto c = service->propose(p, "admin");
    REQUIRE_MESSAGE(c.ok(), c.error().to_string());
    return *c;
  }

  Result<quorum::Ceremony> approve(const quorum::Ceremony& c, std::string_view name) {
    return service->approve(c.id(), name, key(name).sign(c.statement));
  }

  quorum::Ceremony approve_ok(const quorum::Ceremony& c, std::string_view name) {
    auto r = approve(c, name);
    REQUIRE_MESSAGE(r.ok(), r.error().to_string());
    return *r;
  }

  // Records approvals straight in the store, bypassing execution: the ceremony reaches
  // executing exactly as the M-th approval leaves it, before anything is carried out.
  void approve_without_executing(const quorum::Ceremony& c, std::vector<std::string> names) {
    for (const std::string& name : names) {
      auto r = h.store().add_approval(c.id(), {name, key(name).sign(c.statement), h.now});
      REQUIRE_MESSAGE(r.ok(), r.error().to_string());
    }
    auto stored = service->get(c.id());
    REQUIRE(stored.ok());
    REQUIRE(stored->state == quorum::CeremonyState::kExecuting);
  }

  // The whole observable state: every ceremony, every key record, every KEK in the token.
  struct State {
    std::vector<quorum::Ceremony> ceremonies;
    Snapshot keys;
    bool operator==(const State&) const = default;
  };
  State state() {
    auto all = service->list(std::nullopt);
    REQUIRE_MESSAGE(all.ok(), all.error().to_string());
    return State{std::move(*all), h.snapshot()};
  }

  // A key created through a full ceremony.
  void create_key(const std::string& name) {
    quorum::Ceremony c = propose({.action = "create-key", .key = name});
    approve_ok(c, "alice");
    auto done = approve_ok(c, "bob");
    REQUIRE(done.state == quorum::CeremonyState::kExecuted);
  }

  hsm::Hsm& token;
  KeyringHarness h;
  std::vector<OperatorKey> keys;
  quorum::CeremonyOptions options;
  FlakyCeremonyStore flaky;  // the service's store: h.store() unless told to fail
  std::unique_ptr<quorum::CeremonyService> service;
};

}  // namespace kekd::testing
