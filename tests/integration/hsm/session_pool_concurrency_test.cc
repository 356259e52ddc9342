// The session pool and the PKCS#11 adapter against SoftHSM with more threads than sessions:
// callers wait for a free session and never share one, and sessions lost under the pool are
// replaced while other threads keep working. Run under ThreadSanitizer by scripts/sanitizers.sh
// (test suite "concurrency").
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "hsm/session_pool.h"
#include "support/keyring_harness.h"
#include "support/token_fixture.h"

using namespace kekd;
using namespace kekd::testing;

TEST_CASE("EightThreadsShareTwoSessionsWithoutEverHoldingTheSameOne" *
          doctest::test_suite("concurrency")) {
  TokenFixture token;
  auto hsm = token.open_hsm(2);
  REQUIRE(hsm->generate_kek("kekd:payments:1").ok());

  constexpr int kThreads = 8;
  constexpr int kRounds = 60;
  std::mutex held_mu;
  std::set<CK_SESSION_HANDLE> held;  // the sessions leased right now, by any thread
  std::atomic<int> failures{0};
  std::atomic<int> shared{0};

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRounds; ++i) {
        Bytes payload = pattern_bytes(8 * (1 + i % 8), static_cast<std::uint8_t>(t + i));
        auto wrapped = hsm->wrap("kekd:payments:1", payload);
        if (!wrapped.ok()) {
          failures++;
        } else {
          auto opened = hsm->unwrap("kekd:payments:1", *wrapped);
          if (!opened.ok() || as_bytes(*opened) != payload) failures++;
        }
        if (!hsm->random(16).ok()) failures++;

        // A lease is the caller's alone until it ends.
        auto lease = hsm->sessions().acquire();
        if (!lease.ok()) {
          failures++;
          continue;
        }
        {
          std::lock_guard lock(held_mu);
          if (!held.insert(lease->handle()).second) shared++;
        }
        std::this_thread::yield();
        {
          std::lock_guard lock(held_mu);
          held.erase(lease->handle());
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();

  CHECK(failures == 0);
  CHECK(shared == 0);
  CHECK(hsm->healthy());
  // Every session came back: both can be leased at once.
  auto a = hsm->sessions().acquire();
  auto b = hsm->sessions().acquire();
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  CHECK(a->handle() != b->handle());
}

TEST_CASE("SessionsLostUnderBusyThreadsAreReplacedAndThePoolEndsHealthy" *
          doctest::test_suite("concurrency")) {
  TokenFixture token;
  auto hsm = token.open_hsm(3);
  REQUIRE(hsm->generate_kek("kekd:payments:1").ok());
  auto slot = hsm->module().find_token("kekd");
  REQUIRE(slot.ok());

  constexpr int kThreads = 4;
  std::atomic<bool> stop{false};
  std::atomic<int> succeeded{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Bytes payload = pattern_bytes(32, static_cast<std::uint8_t>(t));
      while (!stop) {
        // Operations may fail while sessions are being lost: only the end state is checked.
        auto wrapped = hsm->wrap("kekd:payments:1", payload);
        if (wrapped.ok()) succeeded++;
      }
    });
  }
  // The readiness ticker's part, concurrently: heal whatever is broken.
  std::thread healer([&] {
    while (!stop) {
      (void)hsm->heal();
      std::this_thread::yield();
    }
  });
  for (int round = 0; round < 5; ++round) {
    // Closing every session also logs the application out (PKCS#11 §5.6).
    REQUIRE(hsm->module().fn()->C_CloseAllSessions(*slot) == CKR_OK);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  stop = true;
  for (std::thread& t : threads) t.join();
  healer.join();

  CHECK(succeeded > 0);
  // Whatever the interleaving, the pool recovers: after a heal every session works again.
  REQUIRE(hsm->heal().ok());
  CHECK(hsm->healthy());
  Bytes payload = pattern_bytes(40, 9);
  for (int i = 0; i < 6; ++i) {
    auto wrapped = hsm->wrap("kekd:payments:1", payload);
    REQUIRE_MESSAGE(wrapped.ok(), wrapped.error().to_string());
    auto opened = hsm->unwrap("kekd:payments:1", *wrapped);
    REQUIRE(opened.ok());
    CHECK(as_bytes(*opened) == payload);
  }
}
