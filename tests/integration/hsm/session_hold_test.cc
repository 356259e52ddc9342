// A session hold (Hsm::hold_session) keeps the session that a thread's first call takes until
// the hold ends, so that a batch's items run on one session instead of taking and returning one
// per call, unless another thread waits for a session. Against SoftHSM, with one session in the
// pool: whether another thread can get it shows whether the holder still has it.
#include <doctest/doctest.h>

#include <chrono>
#include <future>
#include <optional>
#include <thread>

#include "hsm/session_pool.h"
#include "support/keyring_harness.h"
#include "support/token_fixture.h"

using namespace kekd;
using namespace kekd::testing;
using namespace std::chrono_literals;

namespace {

constexpr const char* kKek = "kekd:payments:1";

std::unique_ptr<hsm::Pkcs11Hsm> open_one_session(const TokenFixture& token,
                                                 std::chrono::milliseconds stall = 10s,
                                                 std::chrono::milliseconds acquire = 300ms) {
  hsm::Pkcs11Config config = token.config(1);
  config.acquire_timeout = acquire;
  config.stall_threshold = stall;
  auto opened = hsm::Pkcs11Hsm::open(std::move(config));
  REQUIRE_MESSAGE(opened.ok(), opened.error().to_string());
  REQUIRE((*opened)->generate_kek(kKek).ok());
  return std::move(*opened);
}

// What a call on another thread gets now: nothing wrong (the pool's only session was free), or
// kUnavailable after the acquire timeout while someone else has the session.
std::optional<Code> random_elsewhere(hsm::Hsm& hsm) {
  auto call = [&hsm]() -> std::optional<Code> {
    Result<SecretBytes> r = hsm.random(8);
    if (r.ok()) return std::nullopt;
    return r.error().code();
  };
  return std::async(std::launch::async, call).get();
}

}  // namespace

TEST_CASE("CallsInAHoldKeepTheirSessionUntilTheHoldEnds" * doctest::test_suite("concurrency")) {
  TokenFixture token;
  auto hsm = open_one_session(token);
  Bytes payload = pattern_bytes(40, 7);
  {
    std::unique_ptr<hsm::Hsm::SessionHold> hold = hsm->hold_session();
    REQUIRE(hold != nullptr);
    // Taken at the first call, not before.
    CHECK(hsm->health().in_use == 0);
    CHECK(random_elsewhere(*hsm) == std::nullopt);

    // Several calls of every kind on the one session: with a pool of one, a call that took a
    // second lease would wait for the first and time out.
    for (int i = 0; i < 5; ++i) {
      auto wrapped = hsm->wrap(kKek, payload);
      REQUIRE_MESSAGE(wrapped.ok(), wrapped.error().to_string());
      auto opened = hsm->unwrap(kKek, *wrapped);
      REQUIRE_MESSAGE(opened.ok(), opened.error().to_string());
      CHECK(as_bytes(*opened) == payload);
      REQUIRE(hsm->random(16).ok());
    }
    // Kept between calls: nobody else gets it.
    CHECK(hsm->health().in_use == 1);
    CHECK(random_elsewhere(*hsm) == Code::kUnavailable);
  }
  CHECK(hsm->health().in_use == 0);
  CHECK(random_elsewhere(*hsm) == std::nullopt);
}

TEST_CASE("ANestedHoldHoldsNothingMore") {
  TokenFixture token;
  auto hsm = open_one_session(token);
  std::unique_ptr<hsm::Hsm::SessionHold> outer = hsm->hold_session();
  REQUIRE(outer != nullptr);
  REQUIRE(hsm->random(8).ok());
  {
    std::unique_ptr<hsm::Hsm::SessionHold> inner = hsm->hold_session();
    CHECK(inner == nullptr);
    REQUIRE(hsm->random(8).ok());
  }
  // The inner hold's end did not give back the outer hold's session.
  CHECK(hsm->health().in_use == 1);
  outer.reset();
  CHECK(hsm->health().in_use == 0);
}

TEST_CASE("AFailedCallInAHoldGivesTheSessionBackAndTheNextTakesOneAgain" *
          doctest::test_suite("concurrency")) {
  TokenFixture token;
  auto hsm = open_one_session(token);
  auto wrapped = hsm->wrap(kKek, pattern_bytes(40, 8));
  REQUIRE(wrapped.ok());
  Bytes tampered = *wrapped;
  tampered[tampered.size() / 2] ^= 0x01;

  std::unique_ptr<hsm::Hsm::SessionHold> hold = hsm->hold_session();
  REQUIRE(hsm->random(8).ok());
  CHECK(hsm->health().in_use == 1);
  auto refused = hsm->unwrap(kKek, tampered);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().code() == Code::kInvalidCiphertext);
  CHECK(hsm->health().in_use == 0);
  CHECK(random_elsewhere(*hsm) == std::nullopt);

  REQUIRE(hsm->random(8).ok());
  CHECK(hsm->health().in_use == 1);
}

TEST_CASE("AHolderGivesItsSessionToAThreadWaitingForOneAtItsNextCall" *
          doctest::test_suite("concurrency")) {
  TokenFixture token;
  auto hsm = open_one_session(token, 10s, 5s);
  const std::uint64_t leases_before = hsm->health().leases;
  std::unique_ptr<hsm::Hsm::SessionHold> hold = hsm->hold_session();
  REQUIRE(hsm->random(8).ok());
  // Another thread (a worker with a single request, the audit's signer) asks for a session.
  std::future<Result<SecretBytes>> other =
      std::async(std::launch::async, [&hsm] { return hsm->random(8); });
  while (!hsm->sessions().has_waiters()) std::this_thread::sleep_for(1ms);
  // The holder's next call hands the session over and queues for it behind the other thread.
  Result<SecretBytes> mine = hsm->random(8);
  REQUIRE_MESSAGE(mine.ok(), mine.error().to_string());
  // While the hold is still alive the other thread gets its turn, well within its 5-s wait
  // (without the hand-over it would wait until the hold ends).
  REQUIRE(other.wait_for(2s) == std::future_status::ready);
  Result<SecretBytes> theirs = other.get();
  REQUIRE_MESSAGE(theirs.ok(), theirs.error().to_string());
  CHECK(hsm->health().acquire_timeouts == 0);
  CHECK(hsm->health().in_use == 1);  // the holder took one again
  // Three takes (the holder's, the other thread's, the holder's again), and the other thread's
  // wait counted; the holder's second take may have waited too.
  CHECK(hsm->health().leases - leases_before == 3);
  CHECK(hsm->health().lease_waits >= 1);
}

TEST_CASE("TheWatchdogTimesEachCallOfAHoldNotTheWholeHold") {
  TokenFixture token;
  auto hsm = open_one_session(token);
  std::unique_ptr<hsm::Hsm::SessionHold> hold = hsm->hold_session();
  REQUIRE(hsm->random(8).ok());
  std::this_thread::sleep_for(1s);
  CHECK(hsm->health().longest_lease >= 1s);
  // The next call restarts the clock: a long batch of quick calls is not a stuck call. (The
  // margin is for a loaded machine that leaves the thread waiting for a CPU.)
  REQUIRE(hsm->random(8).ok());
  CHECK(hsm->health().longest_lease < 800ms);
}
