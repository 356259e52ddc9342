// The mutex functions kekd hands a PKCS#11 module in C_Initialize (src/hsm/adaptive_mutexes.h).
// SoftHSM uses them for all its locking once given them, so every SoftHSM test also runs on
// them; here: that all four are set, that the mutexes are the adaptive kind, and that they
// exclude each other across threads.
#include "hsm/adaptive_mutexes.h"

#include <doctest/doctest.h>
#include <pthread.h>

#include <thread>
#include <vector>

using namespace kekd;

TEST_CASE("AdaptiveMutexFunctionsAreAllSetAndMakeAdaptiveMutexes") {
  CK_C_INITIALIZE_ARGS args{};
  hsm::use_adaptive_mutexes(args);
  // (doctest cannot print a function pointer: compare as booleans)
  REQUIRE(bool(args.CreateMutex));
  REQUIRE(bool(args.DestroyMutex));
  REQUIRE(bool(args.LockMutex));
  REQUIRE(bool(args.UnlockMutex));

  void* mutex = nullptr;
  REQUIRE(args.CreateMutex(&mutex) == CKR_OK);
  REQUIRE(mutex != nullptr);
  // glibc keeps the type in the mutex; the adaptive kind is what spins before it sleeps.
  CHECK(static_cast<pthread_mutex_t*>(mutex)->__data.__kind == PTHREAD_MUTEX_ADAPTIVE_NP);
  CHECK(args.LockMutex(mutex) == CKR_OK);
  CHECK(pthread_mutex_trylock(static_cast<pthread_mutex_t*>(mutex)) != 0);  // held
  CHECK(args.UnlockMutex(mutex) == CKR_OK);
  CHECK(args.DestroyMutex(mutex) == CKR_OK);
}

TEST_CASE("AdaptiveMutexesExcludeEachOtherAcrossThreads" * doctest::test_suite("concurrency")) {
  CK_C_INITIALIZE_ARGS args{};
  hsm::use_adaptive_mutexes(args);
  void* mutex = nullptr;
  REQUIRE(args.CreateMutex(&mutex) == CKR_OK);
  constexpr int kThreads = 4;
  constexpr int kRounds = 20000;
  long counter = 0;  // unprotected but for the mutex: a lost update shows a broken exclusion
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kRounds; ++i) {
        if (args.LockMutex(mutex) != CKR_OK) return;
        counter = counter + 1;
        args.UnlockMutex(mutex);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  CHECK(counter == long{kThreads} * kRounds);
  CHECK(args.DestroyMutex(mutex) == CKR_OK);
}
