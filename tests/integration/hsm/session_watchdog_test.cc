// The session pool bounds the wait for a session and reports a session held too long as a stall
// (docs/operations.md, "When the HSM hangs"). A lease the test holds stands in for an HSM call that
// does not return: to the pool the two are the same thing, a session that does not come back.
// The end-to-end version, with calls that really hang in a PKCS#11 shim under load, is
// tests/e2e/test_hsm_hangs.py.
#include <doctest/doctest.h>

#include <chrono>
#include <thread>

#include "hsm/session_pool.h"
#include "support/keyring_harness.h"
#include "support/token_fixture.h"

using namespace kekd;
using namespace kekd::testing;
using namespace std::chrono_literals;

namespace {

std::unique_ptr<hsm::Pkcs11Hsm> open_with(const TokenFixture& token, std::size_t sessions,
                                          std::chrono::milliseconds acquire,
                                          std::chrono::milliseconds stall) {
  hsm::Pkcs11Config config = token.config(sessions);
  config.acquire_timeout = acquire;
  config.stall_threshold = stall;
  auto opened = hsm::Pkcs11Hsm::open(std::move(config));
  REQUIRE_MESSAGE(opened.ok(), opened.error().to_string());
  return std::move(*opened);
}

}  // namespace

TEST_CASE("AcquireFailsUnavailableAfterTheTimeoutWhileEverySessionIsHeld") {
  TokenFixture token;
  auto hsm = open_with(token, 2, 300ms, 10s);
  auto a = hsm->sessions().acquire();
  auto b = hsm->sessions().acquire();
  REQUIRE(a.ok());
  REQUIRE(b.ok());

  auto started = std::chrono::steady_clock::now();
  auto random = hsm->random(16);
  auto waited = std::chrono::steady_clock::now() - started;
  REQUIRE_FALSE(random.ok());
  CHECK(random.error().code() == Code::kUnavailable);
  CHECK(random.error().message().find("300 ms") != std::string::npos);
  CHECK(waited >= 300ms);
  CHECK(waited < 2s);
  CHECK(hsm->health().acquire_timeouts == 1);
  CHECK(hsm->health().in_use == 2);
}

TEST_CASE("AcquireWaitsForASessionFreedBeforeTheTimeout" * doctest::test_suite("concurrency")) {
  TokenFixture token;
  auto hsm = open_with(token, 1, 5s, 10s);
  std::thread holder;
  {
    auto held = hsm->sessions().acquire();
    REQUIRE(held.ok());
    holder = std::thread([lease = std::move(*held)]() mutable {
      std::this_thread::sleep_for(200ms);
      // The lease ends here, and with it the wait below.
    });
  }
  auto random = hsm->random(16);
  holder.join();
  REQUIRE_MESSAGE(random.ok(), random.error().to_string());
  CHECK(random->size() == 16);
  CHECK(hsm->health().acquire_timeouts == 0);
}

TEST_CASE("SessionHeldPastTheStallThresholdMakesThePoolUnhealthyUntilItReturns") {
  TokenFixture token;
  auto hsm = open_with(token, 3, 1s, 200ms);
  REQUIRE(hsm->generate_kek("kekd:payments:1").ok());
  CHECK(hsm->healthy());
  {
    auto stuck = hsm->sessions().acquire();
    REQUIRE(stuck.ok());
    std::this_thread::sleep_for(100ms);
    CHECK(hsm->healthy());  // slow is not stuck yet
    CHECK(hsm->health().stalled == 0);
    std::this_thread::sleep_for(200ms);
    hsm::SessionHealth h = hsm->health();
    CHECK_FALSE(hsm->healthy());
    CHECK(h.stalled == 1);
    CHECK(h.in_use == 1);
    CHECK(h.broken == 0);
    CHECK(h.longest_lease >= 300ms);
    // The other sessions still serve meanwhile, and give right answers.
    Bytes payload = pattern_bytes(40, 7);
    auto wrapped = hsm->wrap("kekd:payments:1", payload);
    REQUIRE(wrapped.ok());
    auto opened = hsm->unwrap("kekd:payments:1", *wrapped);
    REQUIRE(opened.ok());
    CHECK(as_bytes(*opened) == payload);
  }
  // The "call" returned: healthy again at once, and the pool is whole.
  hsm::SessionHealth h = hsm->health();
  CHECK(hsm->healthy());
  CHECK(h.stalled == 0);
  CHECK(h.in_use == 0);
  CHECK(h.size == 3);
  CHECK(h.longest_lease == 0ms);
}
