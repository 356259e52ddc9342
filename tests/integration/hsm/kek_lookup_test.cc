// Looking up a KEK's object handle (Pkcs11Hsm's handle cache): one C_FindObjects per label at a
// time, however many workers miss the cache together, as they all do after start-up and after a
// re-initialisation of the module. Against SoftHSM through the PKCS#11 shim, which slows
// C_FindObjectsInit down so that the callers overlap, and counts or fails it.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <string>
#include <thread>
#include <vector>

#include "shim_with_faults.h"
#include "support/keyring_harness.h"
#include "support/token_fixture.h"

using namespace kekd;
using namespace kekd::testing;

namespace {

constexpr const char* kKekA = "kekd:payments:1";
constexpr const char* kKekB = "kekd:payments:2";
constexpr int kThreads = 8;

// Starts kThreads threads at once, each wrapping a payload under labels(i); their results.
template <typename Labels>
std::vector<Result<Bytes>> wrap_together(hsm::Hsm& hsm, Labels labels) {
  std::vector<Result<Bytes>> results(kThreads, Error(Code::kInternal, "not run"));
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      results[i] = hsm.wrap(labels(i), pattern_bytes(32, static_cast<std::uint8_t>(i)));
    });
  }
  for (std::thread& t : threads) t.join();
  return results;
}

// C_FindObjectsInit calls the shim has seen in this process (its counts are written at
// C_Finalize, so read this after the Pkcs11Hsm is gone).
unsigned long long finds(const ShimWithFaults& shim) { return shim.calls()["C_FindObjectsInit"]; }

// Opens kekd's HSM on the shim with kThreads sessions and generates both KEKs. generate_kek makes
// one find per label (is the label free?): kGenerateFinds, before the test's own.
constexpr unsigned long long kGenerateFinds = 2;
std::unique_ptr<hsm::Pkcs11Hsm> open_with_keks(const TokenFixture& token,
                                               const ShimWithFaults& shim) {
  auto hsm = shim.open(token, 0, kThreads);
  REQUIRE(hsm->generate_kek(kKekA).ok());
  REQUIRE(hsm->generate_kek(kKekB).ok());
  return hsm;
}

}  // namespace

TEST_CASE("WorkersThatMissTheHandleCacheTogetherMakeOneLookupPerKek" *
          doctest::test_suite("concurrency")) {
  TokenFixture token;
  ShimWithFaults shim(token);
  auto hsm = open_with_keks(token, shim);
  // Each lookup takes 300 ms: every thread starts within it, and would make its own without the
  // sharing (8 finds, not 2).
  shim.set_rules("delay C_FindObjectsInit 300000\n");
  std::vector<Result<Bytes>> wrapped =
      wrap_together(*hsm, [](int i) { return i % 2 == 0 ? kKekA : kKekB; });
  for (int i = 0; i < kThreads; ++i) {
    REQUIRE_MESSAGE(wrapped[i].ok(), wrapped[i].error().to_string());
    // Each under its own KEK: a handle handed to the wrong label's waiters would not unwrap.
    Result<SecretBytes> unwrapped = hsm->unwrap(i % 2 == 0 ? kKekA : kKekB, *wrapped[i]);
    REQUIRE_MESSAGE(unwrapped.ok(), unwrapped.error().to_string());
    CHECK(Bytes(unwrapped->begin(), unwrapped->end()) ==
          pattern_bytes(32, static_cast<std::uint8_t>(i)));
  }
  hsm.reset();
  // Exact whatever the scheduling: a thread that came after a lookup ended found the handle in
  // the cache.
  CHECK(finds(shim) - kGenerateFinds == 2);
}

TEST_CASE("WorkersWaitingForALookupOfAMissingKekShareItsAnswer" *
          doctest::test_suite("concurrency")) {
  TokenFixture token;
  ShimWithFaults shim(token);
  auto hsm = open_with_keks(token, shim);
  // A missing label is not cached, so a thread that started after the lookup ended (1 s after
  // the others) would look again; none does on any machine this runs on.
  shim.set_rules("delay C_FindObjectsInit 1000000\n");
  std::vector<Result<Bytes>> wrapped = wrap_together(*hsm, [](int) { return "kekd:absent:1"; });
  for (const Result<Bytes>& result : wrapped) {
    REQUIRE_FALSE(result.ok());
    CHECK(result.error().code() == Code::kNotFound);
  }
  hsm.reset();
  CHECK(finds(shim) - kGenerateFinds == 1);
}

TEST_CASE("WhenTheLookupTheyWaitedForFailsWorkersLookOnTheirOwnSessions" *
          doctest::test_suite("concurrency")) {
  TokenFixture token;
  ShimWithFaults shim(token);
  auto hsm = open_with_keks(token, shim);
  // The failure is the finder's, on its session: the others are not handed its CK_RV (which
  // would mark their sessions as failed too), each looks once itself (at once, not one after
  // another: that is not counted here).
  shim.set_rules("delay C_FindObjectsInit 100000\nfail C_FindObjectsInit CKR_DEVICE_ERROR\n");
  std::vector<Result<Bytes>> wrapped = wrap_together(*hsm, [](int) { return kKekA; });
  for (const Result<Bytes>& result : wrapped) {
    REQUIRE_FALSE(result.ok());
    CHECK(result.error().to_string().find("C_FindObjectsInit") != std::string::npos);
  }
  // Each failed session is replaced, and the next lookup finds the KEK.
  shim.set_rules("");
  REQUIRE(hsm->heal().ok());
  CHECK(hsm->health().broken == 0);
  REQUIRE(hsm->wrap(kKekA, pattern_bytes(32, 1)).ok());
  hsm.reset();
  CHECK(finds(shim) - kGenerateFinds == kThreads + 1);
}

TEST_CASE("ASearchThatBeganBeforeAKekWasGeneratedDoesNotAnswerACallMadeAfter" *
          doctest::test_suite("concurrency")) {
  TokenFixture token;
  ShimWithFaults shim(token);
  auto hsm = open_with_keks(token, shim);
  constexpr const char* kNew = "kekd:payments:3";
  // The early wrap's search collects nothing (C_FindObjectsInit runs at once, before the key
  // exists) and then sleeps 3 s in C_FindObjects, the rule read when that call starts.
  shim.set_rules("delay C_FindObjects 3000000\n");
  std::atomic<bool> early_done{false};
  Result<Bytes> early_result = Error(Code::kInternal, "not run");
  std::thread early([&] {
    early_result = hsm->wrap(kNew, pattern_bytes(32, 1));
    early_done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  shim.set_rules("");
  // Meanwhile the key is generated, and a wrap after that must find it: without the change
  // count (keys_changed) it would wait for the early search and get its "no such key".
  REQUIRE(hsm->generate_kek(kNew).ok());
  Result<Bytes> wrapped = hsm->wrap(kNew, pattern_bytes(32, 2));
  const bool overlapped = !early_done;
  early.join();
  CHECK_MESSAGE(wrapped.ok(), (wrapped.ok() ? "" : wrapped.error().to_string()));
  // The case under test happened: the early search was still running, and it found nothing.
  CHECK(overlapped);
  REQUIRE_FALSE(early_result.ok());
  CHECK(early_result.error().code() == Code::kNotFound);
}
