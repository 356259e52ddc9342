// Domain logic of the keyring: lifecycle transitions, the primary version, and which states
// allow which operations. The HSM is the in-memory fake; tests/integration repeats the
// cryptographic paths against SoftHSM.
#include <doctest/doctest.h>

#include "support/keyring_harness.h"
#include "support/memory_hsm.h"
#include "support/test_mandate.h"

using namespace kekd;
using namespace kekd::testing;
using keys::KeyState;

namespace {

struct Fixture {
  MemoryHsm hsm;
  KeyringHarness h{hsm};
};

}  // namespace

TEST_CASE_FIXTURE(Fixture, "CreateKeyRecordsVersionOneEnabledWithCeremony") {
  h.create_key("payments");
  auto info = h.keyring().describe("payments");
  REQUIRE(info.ok());
  CHECK(info->primary_version == 1);
  CHECK(info->record.id.size() == 36);
  CHECK(info->record.id[14] == '4');
  REQUIRE(info->record.versions.size() == 1);
  CHECK(info->record.versions[0].state == KeyState::kEnabled);
  CHECK(info->record.versions[0].ceremony_id == "test-ceremony");
  CHECK(info->record.versions[0].created_at == h.now);
  CHECK(hsm.find_keks("kekd:payments:")->size() == 1);
}

TEST_CASE_FIXTURE(Fixture, "CreateKeyFailsWhenNameTakenOrInvalid") {
  h.create_key("payments");
  Snapshot before = h.snapshot();
  auto again = h.keyring().apply(MandateForTests::create_key("payments"));
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().code() == Code::kAlreadyExists);
  auto bad = h.keyring().apply(MandateForTests::create_key("Bad Name"));
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code() == Code::kInvalidArgument);
  CHECK(h.snapshot() == before);
}

TEST_CASE_FIXTURE(Fixture, "CreateKeyLeavesNoKekWhenHsmFails") {
  hsm.fail_with(Error(Code::kUnavailable, "token gone"));
  auto created = h.keyring().apply(MandateForTests::create_key("payments"));
  REQUIRE_FALSE(created.ok());
  CHECK(created.error().code() == Code::kUnavailable);
  hsm.fail_with(std::nullopt);
  CHECK(h.snapshot() == Snapshot{});
}

TEST_CASE_FIXTURE(Fixture, "RotateMakesNewestEnabledVersionPrimary") {
  h.create_key("payments");
  h.rotate_key("payments");
  h.rotate_key("payments");
  CHECK(h.keyring().describe("payments")->primary_version == 3);
  REQUIRE(h.keyring().apply(MandateForTests::disable("payments", 3)).ok());
  CHECK(h.keyring().describe("payments")->primary_version == 2);
  auto wrapped = h.keyring().wrap("payments", pattern_bytes(32, 1), {});
  REQUIRE(wrapped.ok());
  CHECK(wrapped->version == 2);
}

TEST_CASE_FIXTURE(Fixture, "RotateFailsForUnknownKey") {
  auto rotated = h.keyring().apply(MandateForTests::rotate_key("nope"));
  REQUIRE_FALSE(rotated.ok());
  CHECK(rotated.error().code() == Code::kNotFound);
  CHECK(h.snapshot() == Snapshot{});
}

TEST_CASE_FIXTURE(Fixture, "DisabledVersionRefusesUnwrapUntilEnabled") {
  h.create_key("payments");
  auto wrapped = h.keyring().wrap("payments", pattern_bytes(32, 1), {});
  REQUIRE(wrapped.ok());
  REQUIRE(h.keyring().apply(MandateForTests::disable("payments", 1)).ok());

  auto refused = h.keyring().unwrap("payments", wrapped->ciphertext, {});
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().code() == Code::kFailedPrecondition);
  auto no_primary = h.keyring().wrap("payments", pattern_bytes(32, 1), {});
  REQUIRE_FALSE(no_primary.ok());
  CHECK(no_primary.error().code() == Code::kFailedPrecondition);

  REQUIRE(h.keyring().apply(MandateForTests::enable("payments", 1)).ok());
  CHECK(h.keyring().unwrap("payments", wrapped->ciphertext, {}).ok());
}

TEST_CASE_FIXTURE(Fixture, "ScheduleDestroyThenCancelLeavesVersionDisabled") {
  h.create_key("payments");
  auto scheduled =
      h.keyring().apply(MandateForTests::schedule_destroy("payments", 1, h.now + 86'400'000));
  REQUIRE(scheduled.ok());
  CHECK(scheduled->record.versions[0].state == KeyState::kDestroyScheduled);
  CHECK(scheduled->record.versions[0].destroy_after == h.now + 86'400'000);
  CHECK(scheduled->primary_version == 0);

  auto cancelled = h.keyring().apply(MandateForTests::cancel_destroy("payments", 1));
  REQUIRE(cancelled.ok());
  CHECK(cancelled->record.versions[0].state == KeyState::kDisabled);
  CHECK_FALSE(cancelled->record.versions[0].destroy_after);
}

TEST_CASE_FIXTURE(Fixture, "StateChangeFailsWhenTransitionNotAllowed") {
  h.create_key("payments");
  Snapshot before = h.snapshot();
  auto check = [&](keys::LifecycleMandate m, Code expected) {
    auto r = h.keyring().apply(std::move(m));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == expected);
    CHECK(h.snapshot() == before);
  };
  check(MandateForTests::enable("payments", 1), Code::kFailedPrecondition);
  check(MandateForTests::cancel_destroy("payments", 1), Code::kFailedPrecondition);
  check(MandateForTests::disable("payments", 2), Code::kNotFound);
  check(MandateForTests::disable("nope", 1), Code::kNotFound);
}

TEST_CASE_FIXTURE(Fixture, "KeyringReloadsStateFromStore") {
  h.create_key("payments");
  h.rotate_key("payments");
  REQUIRE(h.keyring().apply(MandateForTests::disable("payments", 1)).ok());
  auto reopened = keys::Keyring::open(hsm, h.store());
  REQUIRE(reopened.ok());
  auto info = (*reopened)->describe("payments");
  REQUIRE(info.ok());
  CHECK(info->primary_version == 2);
  CHECK(info->record == h.keyring().describe("payments")->record);
}
