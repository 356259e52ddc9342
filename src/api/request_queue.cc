#include "request_queue.h"

#include <utility>

#include "kekd/common/thread_name.h"

namespace kekd::api {

RequestQueue::RequestQueue(std::size_t workers, std::chrono::milliseconds timeout)
    : timeout_(timeout) {
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
    queue_.push_back(
        Entry{timeout_.count() > 0 ? Clock::now() + timeout_ : Clock::time_point::max(),
              std::move(run), std::move(expire)});
  }
  // The sweeper is not told: it wakes at least every half timeout by itself (sweep()), so a
  // push costs one wake-up, a worker's.
  work_cv_.notify_one();
}

void RequestQueue::work() {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      Entry& front = queue_.front();
      if (Clock::now() >= front.deadline) {
        job = std::move(front.expire);
        ++expired_;
      } else {
        job = std::move(front.run);
      }
      queue_.pop_front();
    }
    job();
  }
}

void RequestQueue::sweep() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    // FIFO with one timeout: deadlines rise from front to back, so the front is the next to
    // expire. With the queue empty, a job pushed now expires a whole timeout from now: waking
    // every half timeout is early enough to then wait for its deadline precisely.
    Clock::time_point wake = Clock::now() + timeout_ / 2;
    if (!queue_.empty() && queue_.front().deadline < wake) wake = queue_.front().deadline;
    sweep_cv_.wait_until(lock, wake);
    std::vector<Job> expired;
    const Clock::time_point now = Clock::now();
    while (!stopping_ && !queue_.empty() && queue_.front().deadline <= now) {
      expired.push_back(std::move(queue_.front().expire));
      queue_.pop_front();
      ++expired_;
    }
    if (expired.empty()) continue;
    lock.unlock();
    for (Job& job : expired) job();
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

std::uint64_t RequestQueue::expired() const {
  std::lock_guard lock(mu_);
  return expired_;
}

}  // namespace kekd::api
