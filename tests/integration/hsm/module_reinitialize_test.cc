// Re-initialising the PKCS#11 module (Pkcs11Config::reinitialize_after): SoftHSM 2.6 keeps every
// session object it ever made until C_Finalize, so kekd closes its sessions, finalises and
// initialises the module and logs in again after so many wraps and unwraps. Against SoftHSM,
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

std::unique_ptr<hsm::Pkcs11Hsm> open_hsm(hsm::Pkcs11Config config) {
  auto opened = hsm::Pkcs11Hsm::open(std::move(config));
  REQUIRE_MESSAGE(opened.ok(), opened.error().to_string());
  return std::move(*opened);
}

// The shim's call counts (KEKD_SHIM_STATS), written at each C_Finalize: function -> calls.
std::map<std::string, unsigned long long> shim_calls(const std::string& path) {
  std::map<std::string, unsigned long long> calls;
  std::ifstream in(path);
  std::string function;
  unsigned long long n = 0, injected = 0;
  while (in >> function >> n >> injected) calls[function] = n;
  return calls;
}

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

// Heap growth over `wraps` more wraps, after `warm_up` first (the module's caches, the pool's).
std::size_t heap_growth(hsm::Hsm& hsm, int warm_up, int wraps) {
  Bytes payload = pattern_bytes(72, 1);
  for (int i = 0; i < warm_up; ++i) REQUIRE(hsm.wrap(kKekA, payload).ok());
  std::size_t before = heap_in_use();
  for (int i = 0; i < wraps; ++i) REQUIRE(hsm.wrap(kKekA, payload).ok());
  std::size_t after = heap_in_use();
  return after > before ? after - before : 0;
}

}  // namespace

TEST_CASE("TheModuleIsReinitialisedAfterTheConfiguredWrapsAndUnwrapsAndWorkGoesOn") {
  TokenFixture token;
  const std::string stats = token.dir() + "/shim-stats";
  ::setenv("KEKD_SHIM_STATS", stats.c_str(), 1);
  hsm::Pkcs11Config config = token.config(2);
  config.module_path = KEKD_SHIM_MODULE;
  config.reinitialize_after = 10;
  auto hsm = open_hsm(std::move(config));
  REQUIRE(hsm->generate_kek(kKekA).ok());
  REQUIRE(hsm->generate_kek(kKekB).ok());
  CHECK(hsm->health().reinitialize_after == 10);

  // Two KEKs in turn: their object handles are looked up afresh after each re-initialisation, and
  // a handle that pointed at the other KEK would fail the unwrap's integrity check.
  for (int i = 0; i < 30; ++i) {
    REQUIRE(round_trip(*hsm, i % 2 == 0 ? kKekA : kKekB, static_cast<std::uint8_t>(i)));
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
  // Key generation and the other calls make no transient objects and do not count.
  REQUIRE(hsm->random(16).ok());
  CHECK(hsm->health().reinitializations == 6);
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

TEST_CASE("AFailedReinitialisationLeavesSessionsBrokenUntilHealInitialisesTheModuleAgain") {
  TokenFixture token;
  const std::string control = token.dir() + "/shim-control";
  { std::ofstream(control) << ""; }
  ::setenv("KEKD_SHIM_CONTROL", control.c_str(), 1);
  ::setenv("KEKD_SHIM_CONTROL_INTERVAL_MS", "0", 1);  // every call reads the rules
  auto set_rules = [&](const std::string& rules) {
    { std::ofstream(control + ".new") << rules; }
    REQUIRE(std::rename((control + ".new").c_str(), control.c_str()) == 0);
  };
  hsm::Pkcs11Config config = token.config(2);
  config.module_path = KEKD_SHIM_MODULE;
  config.reinitialize_after = 4;
  auto hsm = open_hsm(std::move(config));
  REQUIRE(hsm->generate_kek(kKekA).ok());
  REQUIRE(round_trip(*hsm, kKekA, 1));

  // The next wrap and unwrap reach 4 objects; the module then refuses to initialise again.
  set_rules("fail C_Initialize CKR_DEVICE_ERROR\n");
  Bytes payload = pattern_bytes(40, 2);
  Result<Bytes> wrapped = hsm->wrap(kKekA, payload);
  REQUIRE(wrapped.ok());
  REQUIRE(hsm->unwrap(kKekA, *wrapped).ok());  // answered; the re-initialisation comes after
  hsm::SessionHealth health = hsm->health();
  CHECK(health.reinitialize_failures == 1);
  CHECK(health.reinitializations == 0);
  CHECK(health.broken == 2);
  CHECK_FALSE(hsm->healthy());
  // Nothing works while the module is not initialised, and heal() cannot fix it yet.
  Result<Bytes> refused = hsm->wrap(kKekA, payload);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().code() == Code::kUnavailable);
  CHECK_FALSE(hsm->heal().ok());
  CHECK_FALSE(hsm->healthy());

  // Once the module initialises again, heal() (the daemon's ticker calls it) brings it all back.
  set_rules("");
  REQUIRE_MESSAGE(hsm->heal().ok(), "heal after the fault is gone");
  health = hsm->health();
  CHECK(health.broken == 0);
  CHECK(health.reinitializations == 1);
  CHECK(hsm->healthy());
  Result<SecretBytes> unwrapped = hsm->unwrap(kKekA, *wrapped);
  REQUIRE(unwrapped.ok());
  CHECK(Bytes(unwrapped->begin(), unwrapped->end()) == payload);
}

TEST_CASE("ThreadsWithAndWithoutHoldsWorkOnAcrossReinitialisations" *
          doctest::test_suite("concurrency")) {
  TokenFixture token;
  hsm::Pkcs11Config config = token.config(2);
  config.reinitialize_after = 25;
  auto hsm = open_hsm(std::move(config));
  REQUIRE(hsm->generate_kek(kKekA).ok());

  constexpr int kThreads = 6, kRounds = 40;
  std::atomic<int> failures{0};
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
    });
  }
  for (std::thread& t : threads) t.join();
  CHECK(failures == 0);
  hsm::SessionHealth health = hsm->health();
  // 480 objects: at most 19 re-initialisations (a thread that finds one running goes on).
  CHECK(health.reinitializations >= 1);
  CHECK(health.reinitializations <= 19);
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
  config.acquire_timeout = std::chrono::milliseconds(500);
  auto hsm = open_hsm(std::move(config));
  REQUIRE(hsm->generate_kek(kKekA).ok());
  hsm::SessionPool& pool = hsm->sessions();

  std::optional<hsm::SessionPool::Lease> lease;
  {
    Result<hsm::SessionPool::Lease> first = pool.acquire();
    REQUIRE(first.ok());
    lease.emplace(std::move(*first));
  }
  std::future<Status> reinitialised = std::async(std::launch::async, [&] {
    return pool.reinitialize([&]() -> Result<CK_SLOT_ID> {
      KEKD_RETURN_IF_ERROR(hsm->module().reinitialize());
      return hsm->module().find_token("kekd");
    });
  });
  while (!pool.has_waiters()) std::this_thread::yield();
  lease.reset();
  Result<hsm::SessionPool::Lease> again = pool.acquire();  // after the re-initialisation
  REQUIRE(again.ok());
  // Held past the re-initialisation's deadline: had this taken the session back first, the
  // re-initialisation would now time out.
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  { hsm::SessionPool::Lease given_back = std::move(*again); }
  Status status = reinitialised.get();
  CHECK_MESSAGE(status.ok(), (status.ok() ? "" : status.error().to_string()));
  CHECK(hsm->health().broken == 0);
  REQUIRE(round_trip(*hsm, kKekA, 3));
}
