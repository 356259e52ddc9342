#include "request_queue.h"

#include <algorithm>
#include <utility>

#include "kekd/common/thread_affinity.h"
#include "kekd/common/thread_name.h"

namespace kekd::api {

// A year is as good as forever here, and keeps now() + timeout far from overflowing.
constexpr std::chrono::milliseconds kLongestTimeout = std::chrono::hours(24 * 365);

RequestQueue::RequestQueue(std::size_t workers, std::chrono::milliseconds timeout)
    : timeout_(std::min(timeout, kLongestTimeout)) {
  workers_.reserve(workers);
  for (std::size_t i = 0; i < workers; ++i) {
    workers_.emplace_back([this] {
      name_this_thread("kekd-worker");
      work();
    });
  }
  if (timeout_.count() > 0) {
    sweeper_ = std::thread([this] {
      name_this_thread("kekd-queue");
      sweep();
    });
  }
}

RequestQueue::~RequestQueue() { stop(); }

void RequestQueue::push(Job run, Job expire) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    queue_.push_back(Entry{deadline_from(Clock::now()), std::move(run), std::move(expire)});
  }
  // The sweeper is not told: it wakes at least every half timeout by itself (sweep()), so a
  // push costs one wake-up, a worker's.
  work_cv_.notify_one();
}

RequestQueue::Clock::time_point RequestQueue::deadline_from(Clock::time_point now) const {
  return timeout_.count() > 0 ? now + timeout_ : Clock::time_point::max();
}

void RequestQueue::work() {
  for (;;) {
    Entry entry;
    bool expired = false;
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      entry = std::move(queue_.front());
      queue_.pop_front();
      expired = Clock::now() >= entry.deadline;
      if (expired) ++expired_;
    }
    // Run, and destroy both jobs' captures, outside the lock: a capture's destructor may push.
    if (expired) {
      entry.expire();
    } else {
      entry.run();
    }
  }
}

void RequestQueue::sweep() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    // FIFO with one timeout: deadlines rise from front to back, so the front is the next to
    // expire. With the queue empty, a job pushed now expires a whole timeout from now: waking
    // every half timeout is early enough to then wait for its deadline precisely.
    // At least 1 ms: with a 1 ms timeout, half of it in whole milliseconds is 0, and the sweeper
    // would spin.
    Clock::time_point wake = Clock::now() + std::max(std::chrono::milliseconds(1), timeout_ / 2);
    if (!queue_.empty() && queue_.front().deadline < wake) wake = queue_.front().deadline;
    sweep_cv_.wait_until(lock, wake);
    std::vector<Entry> expired;
    const Clock::time_point now = Clock::now();
    while (!stopping_ && !queue_.empty() && queue_.front().deadline <= now) {
      expired.push_back(std::move(queue_.front()));
      queue_.pop_front();
      ++expired_;
    }
    if (expired.empty()) continue;
    lock.unlock();
    for (Entry& entry : expired) entry.expire();
    expired.clear();  // the jobs' captures (connections, requests) are released outside the lock
    lock.lock();
  }
}

void RequestQueue::stop() {
  std::deque<Entry> dropped;
  {
    std::lock_guard lock(mu_);
    if (stopping_ && workers_.empty() && !sweeper_.joinable()) return;
    stopping_ = true;
    dropped.swap(queue_);
  }
  work_cv_.notify_all();
  sweep_cv_.notify_all();
  dropped.clear();
  for (std::thread& t : workers_) {
    if (t.joinable()) t.join();
  }
  workers_.clear();
  if (sweeper_.joinable()) sweeper_.join();
}

Status RequestQueue::pin_workers(const std::vector<unsigned>& cpus) {
  // Checked here, not left to the kernel: it accepts any online CPU, even one outside the
  // process's own affinity (taskset, CPUAffinity=), and would widen the workers' to it.
  KEKD_RETURN_IF_ERROR(check_cpus_allowed(cpus, "worker CPUs"));
  for (std::thread& worker : workers_) {
    KEKD_RETURN_IF_ERROR(pin_thread(worker, cpus));
  }
  return ok_status();
}

std::uint64_t RequestQueue::expired() const {
  std::lock_guard lock(mu_);
  return expired_;
}

}  // namespace kekd::api
