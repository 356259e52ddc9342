// The queue between the I/O threads and the workers (src/api/request_queue.h): every job runs or
// expires exactly once, expiry comes at the timeout and not before, and stop() drops what no
// worker has taken; the workers can be confined to chosen CPUs. Threads throughout, so suite
// "concurrency" (run under ThreadSanitizer).
#include <doctest/doctest.h>
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "api/request_queue.h"
#include "kekd/common/thread_affinity.h"

using kekd::api::RequestQueue;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// Holds every worker that runs `hold()` until release().
class Gate {
 public:
  void hold() {
    std::unique_lock lock(mu_);
    ++held_;
    cv_.notify_all();
    cv_.wait(lock, [this] { return open_; });
  }
  void wait_held(int n) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return held_ >= n; });
  }
  void release() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int held_ = 0;
  bool open_ = false;
};

void wait_for(const std::atomic<int>& counter, int value) {
  const auto deadline = Clock::now() + 10s;
  while (counter.load() < value && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
}

}  // namespace

TEST_CASE("RequestQueueRunsEveryJobOnceOnItsWorkers" * doctest::test_suite("concurrency")) {
  RequestQueue queue(4, 2000ms);
  std::atomic<int> ran{0}, expired{0};
  std::vector<std::thread> pushers;
  for (int t = 0; t < 4; ++t) {
    pushers.emplace_back([&] {
      for (int i = 0; i < 2500; ++i) queue.push([&] { ran++; }, [&] { expired++; });
    });
  }
  for (auto& t : pushers) t.join();
  wait_for(ran, 10000);
  CHECK(ran.load() == 10000);
  CHECK(expired.load() == 0);
  CHECK(queue.expired() == 0);
}

TEST_CASE("RequestQueueExpiresWhatNoWorkerTookInTimeAndNeverRunsIt" *
          doctest::test_suite("concurrency")) {
  RequestQueue queue(2, 300ms);
  Gate gate;
  std::atomic<int> held_done{0}, ran{0}, expired{0};
  for (int i = 0; i < 2; ++i) {
    queue.push(
        [&] {
          gate.hold();
          held_done++;
        },
        [&] { FAIL("a taken job expired"); });
  }
  gate.wait_held(2);  // both workers are busy from here on
  const auto pushed = Clock::now();
  std::vector<Clock::duration> waited(3);
  std::atomic<int> index{0};
  for (int i = 0; i < 3; ++i) {
    queue.push([&] { ran++; },
               [&] {
                 waited[index++] = Clock::now() - pushed;
                 expired++;
               });
  }
  wait_for(expired, 3);
  CHECK(expired.load() == 3);
  for (auto w : waited) {
    CHECK(w >= 300ms);         // never before the timeout
    CHECK(w < 300ms + 250ms);  // and promptly after it (the sweeper, not a worker, answered)
  }
  gate.release();
  wait_for(held_done, 2);
  // The workers are free again: a new job runs, and the expired ones never did.
  queue.push([&] { ran++; }, [&] { expired++; });
  wait_for(ran, 1);
  CHECK(ran.load() == 1);
  CHECK(expired.load() == 3);
  CHECK(queue.expired() == 3);
}

TEST_CASE("RequestQueueWithoutATimeoutWaitsAsLongAsItTakes" * doctest::test_suite("concurrency")) {
  RequestQueue queue(1, 0ms);
  Gate gate;
  std::atomic<int> ran{0}, expired{0};
  queue.push([&] { gate.hold(); }, [&] { expired++; });
  gate.wait_held(1);
  queue.push([&] { ran++; }, [&] { expired++; });
  std::this_thread::sleep_for(200ms);
  CHECK(ran.load() == 0);
  gate.release();
  wait_for(ran, 1);
  CHECK(ran.load() == 1);
  CHECK(expired.load() == 0);
}

TEST_CASE("RequestQueueStopDropsQueuedJobsAndWaitsForRunningOnes" *
          doctest::test_suite("concurrency")) {
  auto queue = std::make_unique<RequestQueue>(1, 5000ms);
  Gate gate;
  std::atomic<int> finished{0}, ran{0}, expired{0};
  auto token = std::make_shared<int>(0);  // a job's capture, like a connection
  queue->push(
      [&] {
        gate.hold();
        finished++;
      },
      [&] { expired++; });
  gate.wait_held(1);
  queue->push([&, token] { ran++; }, [&, token] { expired++; });
  CHECK(token.use_count() == 3);  // both callbacks hold it
  std::thread stopper([&] { queue->stop(); });
  std::this_thread::sleep_for(100ms);
  CHECK(finished.load() == 0);  // stop() is waiting for the running job
  gate.release();
  stopper.join();
  CHECK(finished.load() == 1);
  CHECK(ran.load() == 0);
  CHECK(expired.load() == 0);
  CHECK(token.use_count() == 1);                    // the dropped job's captures were released
  queue->push([&] { ran++; }, [&] { expired++; });  // after stop: neither runs
  queue.reset();
  CHECK(ran.load() == 0);
  CHECK(expired.load() == 0);
}

TEST_CASE("RequestQueueWithAnEnormousOrTinyTimeoutStillRunsOrExpiresCorrectly" *
          doctest::test_suite("concurrency")) {
  {
    // now() + timeout must not overflow into a deadline in the past (every job expired at once).
    RequestQueue queue(1, std::chrono::milliseconds::max());
    std::atomic<int> ran{0}, expired{0};
    queue.push([&] { ran++; }, [&] { expired++; });
    wait_for(ran, 1);
    CHECK(ran.load() == 1);
    CHECK(expired.load() == 0);
  }
  {
    // Half of 1 ms in whole milliseconds is 0: the sweeper must still wait rather than spin,
    // and every job must still run or expire exactly once. One worker, 2 ms per job: all but
    // the first few wait longer than 1 ms, so some must expire.
    RequestQueue queue(1, 1ms);
    std::atomic<int> ran{0}, expired{0}, done{0};
    for (int i = 0; i < 100; ++i) {
      queue.push(
          [&] {
            std::this_thread::sleep_for(2ms);
            ran++;
            done++;
          },
          [&] {
            expired++;
            done++;
          });
    }
    wait_for(done, 100);
    CHECK(done.load() == 100);
    CHECK(ran.load() + expired.load() == 100);
    CHECK(expired.load() > 0);
  }
}

// server.worker_cpus: every worker may run only on the CPUs given, and a CPU the process may not
// use is refused with a message that says which it may (kekd serve checks this before it starts).
TEST_CASE("RequestQueuePinsEveryWorkerToTheGivenCpus" * doctest::test_suite("concurrency")) {
  const std::vector<unsigned> allowed = kekd::allowed_cpus();
  REQUIRE_FALSE(allowed.empty());
  const std::vector<unsigned> one = {allowed.back()};
  RequestQueue queue(3, 0ms);  // no timeout: a job held up on a busy machine still runs
  REQUIRE(queue.pin_workers(one).ok());

  // Three jobs held until all three run: one on each worker, each reading its own affinity.
  Gate gate;
  std::mutex mu;
  std::vector<std::vector<unsigned>> seen;
  for (int i = 0; i < 3; ++i) {
    queue.push(
        [&] {
          cpu_set_t set;
          CPU_ZERO(&set);
          std::vector<unsigned> cpus;  // stays empty if the call fails
          if (pthread_getaffinity_np(pthread_self(), sizeof set, &set) == 0) {
            for (unsigned cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
              if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
            }
          }
          {
            std::lock_guard lock(mu);
            seen.push_back(std::move(cpus));
          }
          gate.hold();
        },
        [] {});
  }
  gate.wait_held(3);
  gate.release();
  queue.stop();
  REQUIRE(seen.size() == 3);
  for (const std::vector<unsigned>& cpus : seen) CHECK(cpus == one);
  // The thread that made the queue keeps every CPU it had.
  CHECK(kekd::allowed_cpus() == allowed);
}

TEST_CASE("WorkerCpusThatTheProcessMayNotUseAreRefusedWithWhatItMay" *
          doctest::test_suite("concurrency")) {
  const std::vector<unsigned> allowed = kekd::allowed_cpus();
  REQUIRE_FALSE(allowed.empty());
  CHECK(kekd::check_cpus_allowed(allowed, "server.worker_cpus").ok());
  CHECK(kekd::check_cpus_allowed({}, "server.worker_cpus").ok());
  unsigned missing = 0;
  while (std::binary_search(allowed.begin(), allowed.end(), missing)) ++missing;
  kekd::Status refused = kekd::check_cpus_allowed({allowed.front(), missing}, "server.worker_cpus");
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().code() == kekd::Code::kInvalidArgument);
  CHECK(refused.error().message() == "server.worker_cpus: CPU " + std::to_string(missing) +
                                         " is not one kekd may run on (" +
                                         kekd::cpu_list_text(allowed) + ")");

  // Pinning to it is refused too, by kekd: the kernel would take a CPU outside the process's
  // taskset as long as it is online, and widen the workers' affinity.
  RequestQueue queue(1, 0ms);
  kekd::Status pinned = queue.pin_workers({missing});
  REQUIRE_FALSE(pinned.ok());
  CHECK(pinned.error().message() == "worker CPUs: CPU " + std::to_string(missing) +
                                        " is not one kekd may run on (" +
                                        kekd::cpu_list_text(allowed) + ")");
}

TEST_CASE("CpuListTextIsWhatTheKernelWrites") {
  CHECK(kekd::cpu_list_text({}) == "");
  CHECK(kekd::cpu_list_text({5}) == "5");
  CHECK(kekd::cpu_list_text({0, 1}) == "0-1");
  CHECK(kekd::cpu_list_text({6, 0, 2, 1, 3, 1}) == "0-3,6");
  CHECK(kekd::cpu_list_text({0, 2, 4, 5, 6, 1023}) == "0,2,4-6,1023");
}
