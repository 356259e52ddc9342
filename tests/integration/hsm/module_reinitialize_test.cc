// Re-initialising the PKCS#11 module (Pkcs11Config::reinitialize_after): SoftHSM 2.6 keeps every
// session object it ever made until C_Finalize, so kekd closes its sessions, finalises and
// initialises the module and logs in again after so many wraps and unwraps
// (Pkcs11Hsm::reinitialize_if_due, which the daemon calls once a second). Against SoftHSM,
// through the PKCS#11 shim where the module's own calls are counted or failed.
#include <doctest/doctest.h>
#include <malloc.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "hsm/module.h"
#include "hsm/session_pool.h"
#include "shim_with_faults.h"
#include "support/keyring_harness.h"
#include "support/token_fixture.h"

using namespace kekd;
using namespace kekd::testing;

namespace {

constexpr const char* kKekA = "kekd:payments:1";
constexpr const char* kKekB = "kekd:payments:2";

// Under AddressSanitizer, malloc is not glibc's, and mallinfo2 does not see SoftHSM's memory.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kGlibcMalloc = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kGlibcMalloc = false;
#else
constexpr bool kGlibcMalloc = true;
#endif
#else
constexpr bool kGlibcMalloc = true;
#endif

// Wraps a fresh payload under label and unwraps it again; false (with a message) on any failure.
bool round_trip(hsm::Hsm& hsm, const char* label, std::uint8_t seed) {
  Bytes payload = pattern_bytes(40, seed);
  Result<Bytes> wrapped = hsm.wrap(label, payload);
  if (!wrapped.ok()) {
    MESSAGE("wrap: " << wrapped.error().to_string());
    return false;
  }
  Result<SecretBytes> unwrapped = hsm.unwrap(label, *wrapped);
  if (!unwrapped.ok()) {
    MESSAGE("unwrap: " << unwrapped.error().to_string());
    return false;
  }
  return Bytes(unwrapped->begin(), unwrapped->end()) == payload;
}

// Bytes of glibc's heap in use now.
std::size_t heap_in_use() { return mallinfo2().uordblks; }

// Heap growth over `wraps` more wraps, after `warm_up` first (the module's caches, the pool's),
// with reinitialize_if_due() after each wrap, as if the daemon's ticker ran that often.
std::size_t heap_growth(hsm::Pkcs11Hsm& hsm, int warm_up, int wraps) {
  Bytes payload = pattern_bytes(72, 1);
  auto wrap = [&] {
    REQUIRE(hsm.wrap(kKekA, payload).ok());
    REQUIRE(hsm.reinitialize_if_due().ok());
  };
  for (int i = 0; i < warm_up; ++i) wrap();
  std::size_t before = heap_in_use();
  for (int i = 0; i < wraps; ++i) wrap();
  std::size_t after = heap_in_use();
  return after > before ? after - before : 0;
}

// Has the pool re-initialise the module as Pkcs11Hsm does, without the count.
Status reinitialize_pool(hsm::Pkcs11Hsm& hsm) {
  return hsm.sessions().reinitialize([&]() -> Result<CK_SLOT_ID> {
    KEKD_RETURN_IF_ERROR(hsm.module().reinitialize());
    return hsm.module().find_token("kekd");
  });
}

}  // namespace

TEST_CASE("TheModuleIsReinitialisedAfterTheConfiguredWrapsAndUnwrapsAndWorkGoesOn") {
  TokenFixture token;
  const std::string stats = token.dir() + "/shim-stats";
  ScopedEnv stats_env("KEKD_SHIM_STATS", stats);
  hsm::Pkcs11Config config = token.config(2);
  config.module_path = KEKD_SHIM_MODULE;
  config.reinitialize_after = 10;
  auto hsm = open_hsm(std::move(config));
  REQUIRE(hsm->generate_kek(kKekA).ok());
  REQUIRE(hsm->generate_kek(kKekB).ok());
  CHECK(hsm->health().reinitialize_after == 10);
  // Nothing is due before 10 transient objects (key generation makes none).
  REQUIRE(round_trip(*hsm, kKekA, 100));
  REQUIRE(hsm->reinitialize_if_due().ok());
  CHECK(hsm->health().reinitializations == 0);

  // Two KEKs in turn: their object handles are looked up afresh after each re-initialisation, and
  // a handle that pointed at the other KEK would fail the unwrap's integrity check.
  for (int i = 1; i < 30; ++i) {
    REQUIRE(round_trip(*hsm, i % 2 == 0 ? kKekA : kKekB, static_cast<std::uint8_t>(i)));
    REQUIRE(hsm->reinitialize_if_due().ok());
  }
  // 60 transient objects (a wrap and an unwrap each), one re-initialisation per 10.
  hsm::SessionHealth health = hsm->health();
  CHECK(health.reinitializations == 6);
  CHECK(health.reinitialize_failures == 0);
  CHECK(health.broken == 0);
  CHECK(health.in_use == 0);
  // The module itself saw them: finalised six times. The shim writes its counts at C_Finalize,
  // so the file shows the initialisations up to the last one: at open, then after five.
  std::map<std::string, unsigned long long> calls = shim_calls(stats);
  CHECK(calls["C_Finalize"] == 6);
  CHECK(calls["C_Initialize"] == 6);
  REQUIRE(round_trip(*hsm, kKekB, 200));
}

TEST_CASE("ReinitialisingGivesBackTheMemorySoftHsmKeepsOfDestroyedObjects") {
  if (!kGlibcMalloc) {
    MESSAGE(
        "built with AddressSanitizer: glibc's heap statistics do not apply; the ordinary "
        "build runs this test");
    return;
  }
  TokenFixture token;
  constexpr int kWarmUp = 2000, kWraps = 10000;
  // The control: without re-initialising, SoftHSM 2.6 keeps ~200-300 bytes per wrap. If this
  // fails, the module no longer does, and the SoftHSM default of reinitialize_after can go.
  std::size_t kept = 0;
  {
    hsm::Pkcs11Config config = token.config(1);
    config.reinitialize_after = 0;
    auto hsm = open_hsm(std::move(config));
    REQUIRE(hsm->generate_kek(kKekA).ok());
    kept = heap_growth(*hsm, kWarmUp, kWraps);
    MESSAGE("heap growth over " << kWraps << " wraps, never re-initialised: " << kept);
    CHECK(kept > kWraps * 150);
    CHECK(hsm->health().reinitializations == 0);
  }
  // Re-initialised every 1000: what is kept stays within about one period's worth.
  hsm::Pkcs11Config config = token.config(1);
  config.reinitialize_after = 1000;
  auto hsm = open_hsm(std::move(config));
  std::size_t growth = heap_growth(*hsm, kWarmUp, kWraps);
  MESSAGE("heap growth over " << kWraps << " wraps, re-initialised every 1000: " << growth);
  CHECK(growth < kept / 4);
  CHECK(hsm->health().reinitializations == (kWarmUp + kWraps) / 1000);
}

TEST_CASE("AFailedReinitialisationMakesNoCallUntilHealInitialisesTheModuleAgain" *
          doctest::test_suite("concurrency")) {
  TokenFixture token;
  ShimWithFaults shim(token);
  auto hsm = shim.open(token, 4);
  REQUIRE(hsm->generate_kek(kKekA).ok());
  Bytes payload = pattern_bytes(40, 2);
  Result<Bytes> wrapped = hsm->wrap(kKekA, payload);
  REQUIRE(wrapped.ok());
  REQUIRE(round_trip(*hsm, kKekA, 1));  // 3 transient objects: not due yet
  REQUIRE(hsm->reinitialize_if_due().ok());
  REQUIRE(hsm->unwrap(kKekA, *wrapped).ok());  // 4: due

  // The module refuses to initialise again.
  shim.set_rules("fail C_Initialize CKR_DEVICE_ERROR\n");
  Status failed = hsm->reinitialize_if_due();
  REQUIRE_FALSE(failed.ok());
  hsm::SessionHealth health = hsm->health();
  CHECK(health.reinitialize_failures == 1);
  CHECK(health.reinitializations == 0);
  CHECK(health.broken == 2);
  CHECK_FALSE(hsm->healthy());
  CHECK_FALSE(hsm->module().initialized());

  // Meanwhile every call, from several threads at once, is refused without reaching the module
  // (PKCS#11 promises nothing before C_Initialize): the shim counts no C_OpenSession.
  std::atomic<int> refused{0}, other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        Result<Bytes> r = hsm->wrap(kKekA, payload);
        (!r.ok() && r.error().code() == Code::kUnavailable ? refused : other)++;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  CHECK(refused == 80);
  CHECK(other == 0);
  // heal() tries again (the daemon's ticker calls it once a second), in vain while the fault
  // lasts; those tries are not counted as more failures.
  CHECK_FALSE(hsm->heal().ok());
  CHECK_FALSE(hsm->heal().ok());
  CHECK(hsm->health().reinitialize_failures == 1);
  CHECK_FALSE(hsm->healthy());

  // Once the module initialises again, heal() brings it all back.
  shim.set_rules("");
  REQUIRE_MESSAGE(hsm->heal().ok(), "heal after the fault is gone");
  health = hsm->health();
  CHECK(health.broken == 0);
  CHECK(health.reinitializations == 1);
  CHECK(hsm->healthy());
  Result<SecretBytes> unwrapped = hsm->unwrap(kKekA, *wrapped);
  REQUIRE(unwrapped.ok());
  CHECK(Bytes(unwrapped->begin(), unwrapped->end()) == payload);
  // The shim writes its counts at each C_Finalize: after the last one, they hold every call.
  // Two sessions opened at the start and two after the successful heal(), none in between (the
  // refused calls and the failed heal() calls never reached the module).
  hsm.reset();
  std::map<std::string, unsigned long long> calls = shim.calls();
  CHECK(calls["C_OpenSession"] == 4);  // 2 at open, 2 after the successful heal()
  CHECK(calls["C_Finalize"] == 2);     // the failed re-initialisation's, and the last
}

TEST_CASE("ARunningCallOlderThanAQuarterOfTheAcquireTimeoutPutsTheReinitialisationOff") {
  TokenFixture token;
  hsm::Pkcs11Config config = token.config(2);
  config.reinitialize_after = 0;
  config.acquire_timeout = std::chrono::milliseconds(400);  // a quarter: 100 ms
  auto hsm = open_hsm(std::move(config));
  Result<hsm::SessionPool::Lease> held = hsm->sessions().acquire();  // a call that hangs
  REQUIRE(held.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  const std::uint64_t leases = hsm->health().leases;
  Status status = reinitialize_pool(*hsm);
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().code() == Code::kUnavailable);
  CHECK(status.error().message().find("running for more than 100 ms") != std::string::npos);
  // At once, without collecting the sessions (each one taken counts as a lease): the other one
  // is still there for requests.
  CHECK(hsm->health().leases == leases);
  CHECK(hsm->module().initialized());
  CHECK(hsm->health().in_use == 1);
  CHECK(hsm->random(8).ok());
}

TEST_CASE("ThreadsWithAndWithoutHoldsWorkOnAcrossReinitialisations" *
          doctest::test_suite("concurrency")) {
  TokenFixture token;
  hsm::Pkcs11Config config = token.config(2);
  config.reinitialize_after = 25;
  // Room under ThreadSanitizer on a loaded machine: the wait for sessions is a quarter of this.
  config.acquire_timeout = std::chrono::milliseconds(8000);
  auto hsm = open_hsm(std::move(config));
  REQUIRE(hsm->generate_kek(kKekA).ok());

  constexpr int kThreads = 6, kRounds = 40;
  std::atomic<int> failures{0}, done{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Half the threads keep a session across batches of 5, like a batch request's worker.
      std::unique_ptr<hsm::Hsm::SessionHold> hold;
      for (int i = 0; i < kRounds; ++i) {
        if (t % 2 == 0 && i % 5 == 0) hold = hsm->hold_session();
        if (!round_trip(*hsm, kKekA, static_cast<std::uint8_t>(t * kRounds + i))) failures++;
        if (i % 5 == 4) hold.reset();
      }
      done++;
    });
  }
  // The daemon's ticker, far more often.
  int tries = 0;
  while (done < kThreads) {
    tries++;
    Status status = hsm->reinitialize_if_due();
    if (!status.ok()) MESSAGE(status.error().to_string());
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  for (std::thread& t : threads) t.join();
  CHECK(failures == 0);
  hsm::SessionHealth health = hsm->health();
  MESSAGE(tries << " tries, " << health.reinitializations << " re-initialisations");
  CHECK(health.reinitializations >= 1);
  CHECK(health.reinitialize_failures == 0);
  CHECK(health.broken == 0);
  CHECK(health.in_use == 0);
  REQUIRE(round_trip(*hsm, kKekA, 0));
}

TEST_CASE("AReinitialisationWaitingForSessionsGetsTheOneGivenBackBeforeItsOwnerTakesItAgain" *
          doctest::test_suite("concurrency")) {
  // A worker under full load gives its session back and asks for one again at once. While a
  // re-initialisation waits for the sessions, acquire() leaves the freed one to it: otherwise
  // the worker would take it back, again and again, until the re-initialisation gave up.
  TokenFixture token;
  hsm::Pkcs11Config config = token.config(1);
  config.reinitialize_after = 0;
  config.acquire_timeout = std::chrono::milliseconds(4000);  // the wait for sessions: 1 s
  auto hsm = open_hsm(std::move(config));
  REQUIRE(hsm->generate_kek(kKekA).ok());
  hsm::SessionPool& pool = hsm->sessions();

  std::optional<hsm::SessionPool::Lease> lease;
  {
    Result<hsm::SessionPool::Lease> first = pool.acquire();
    REQUIRE(first.ok());
    lease.emplace(std::move(*first));
  }
  std::future<Status> reinitialised =
      std::async(std::launch::async, [&] { return reinitialize_pool(*hsm); });
  while (!pool.has_waiters() &&
         reinitialised.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
    std::this_thread::yield();
  }
  REQUIRE_MESSAGE(pool.has_waiters(), "the re-initialisation ended before it waited");
  lease.reset();
  Result<hsm::SessionPool::Lease> again = pool.acquire();  // after the re-initialisation
  REQUIRE(again.ok());
  // Held past the re-initialisation's deadline: had this taken the session back first, the
  // re-initialisation would now time out.
  std::this_thread::sleep_for(std::chrono::milliseconds(1300));
  { hsm::SessionPool::Lease given_back = std::move(*again); }
  Status status = reinitialised.get();
  CHECK_MESSAGE(status.ok(), (status.ok() ? "" : status.error().to_string()));
  CHECK(hsm->health().broken == 0);
  REQUIRE(round_trip(*hsm, kKekA, 3));
}

TEST_CASE("ATokenNotFoundAgainIsReinitialisedByHealButASessionThatFailedToOpenIsOnlyReopened") {
  TokenFixture token;
  ShimWithFaults shim(token);
  auto hsm = shim.open(token, 2);
  REQUIRE(hsm->generate_kek(kKekA).ok());

  // The module initialises again, but the token's slot is not found: no session may open on
  // the old slot, and heal() must do the whole re-initialisation again.
  REQUIRE(round_trip(*hsm, kKekA, 1));
  shim.set_rules("fail C_GetSlotList CKR_DEVICE_ERROR\n");
  REQUIRE_FALSE(hsm->reinitialize_if_due().ok());
  CHECK(hsm->module().initialized());
  CHECK(hsm->health().broken == 2);
  Result<Bytes> refused = hsm->wrap(kKekA, pattern_bytes(40, 1));
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().code() == Code::kUnavailable);
  shim.set_rules("");
  REQUIRE(hsm->heal().ok());
  CHECK(hsm->health().broken == 0);
  CHECK(hsm->health().reinitializations == 1);
  CHECK(hsm->health().reinitialize_failures == 1);

  // The token is found, but the sessions fail to open: heal() only reopens them, without
  // another C_Finalize.
  REQUIRE(round_trip(*hsm, kKekA, 2));
  shim.set_rules("fail C_OpenSession CKR_DEVICE_ERROR\n");
  REQUIRE_FALSE(hsm->reinitialize_if_due().ok());
  CHECK(hsm->health().broken == 2);
  shim.set_rules("");
  REQUIRE(hsm->heal().ok());
  CHECK(hsm->health().broken == 0);
  CHECK(hsm->health().reinitialize_failures == 2);
  REQUIRE(round_trip(*hsm, kKekA, 3));
  hsm.reset();
  // C_Finalize: the three re-initialisations (failed to find the token, heal, failed to open
  // sessions) and the last one; not a fourth from the second heal().
  CHECK(shim.calls()["C_Finalize"] == 4);
}
