// The session pool and the PKCS#11 adapter against SoftHSM with more threads than sessions:
// callers wait for a free session and never share one, and sessions lost under the pool are
// replaced while other threads keep working. Run under ThreadSanitizer by scripts/sanitizers.sh
// (test suite "concurrency").
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>
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
  std::string first_error;  // under held_mu
  auto fail = [&](const std::string& what) {
    std::lock_guard lock(held_mu);
    if (failures++ == 0) first_error = what;
  };

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRounds; ++i) {
        Bytes payload = pattern_bytes(16 + 8 * (i % 8), static_cast<std::uint8_t>(t + i));
        auto wrapped = hsm->wrap("kekd:payments:1", payload);
        if (!wrapped.ok()) {
          fail("wrap: " + wrapped.error().to_string());
        } else {
          auto opened = hsm->unwrap("kekd:payments:1", *wrapped);
          if (!opened.ok()) {
            fail("unwrap: " + opened.error().to_string());
          } else if (as_bytes(*opened) != payload) {
            fail("unwrap gave another payload");
          }
        }
        auto random = hsm->random(16);
        if (!random.ok()) fail("random: " + random.error().to_string());

        // A lease is the caller's alone until it ends.
        auto lease = hsm->sessions().acquire();
        if (!lease.ok()) {
          fail("acquire: " + lease.error().to_string());
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

  CHECK_MESSAGE(failures == 0, first_error);
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
  // Sessions are closed between calls, never during one: SoftHSM itself leaks memory (seen by
  // LeakSanitizer) when C_CloseAllSessions deletes a session that another thread is inside.
  std::shared_mutex between_calls;
  // Set while the sessions are being closed, so that callers stop taking the shared lock and the
  // closing thread gets it (glibc's rwlock would otherwise let the readers starve it).
  std::atomic<bool> pausing{false};
  auto enter = [&] {
    while (pausing) std::this_thread::yield();
    return std::shared_lock(between_calls);
  };
  std::atomic<int> succeeded{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Bytes payload = pattern_bytes(32, static_cast<std::uint8_t>(t));
      while (!stop) {
        // Operations may fail while sessions are being lost: only the end state is checked.
        auto lock = enter();
        auto wrapped = hsm->wrap("kekd:payments:1", payload);
        if (wrapped.ok()) succeeded++;
      }
    });
  }
  // The readiness ticker's part, concurrently: heal whatever is broken.
  std::thread healer([&] {
    while (!stop) {
      {
        auto lock = enter();
        (void)hsm->heal();
      }
      std::this_thread::yield();
    }
  });
  for (int round = 0; round < 5; ++round) {
    {
      // Closing every session also logs the application out (PKCS#11 §5.6).
      pausing = true;
      std::unique_lock lock(between_calls);
      REQUIRE(hsm->module().fn()->C_CloseAllSessions(*slot) == CKR_OK);
      pausing = false;
    }
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
