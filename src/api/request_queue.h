// The queue between the I/O threads and the workers that run handlers (which block in HSM calls).
//
// One FIFO, N worker threads, and one sweeper thread that answers the requests no worker took in
// time. It replaces an asio::thread_pool plus one steady_timer per request: that timer cost an
// allocation, a timer-queue insertion and, since it was never cancelled (cancelling would have
// cost a post to the connection's strand), a handler run on an I/O thread two seconds later, for
// every request. Here a request's deadline is a field, and since the queue is FIFO with one
// timeout, the expired requests are always at its front: the sweeper looks only there.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "kekd/common/error.h"

namespace kekd::api {

class RequestQueue {
 public:
  using Clock = std::chrono::steady_clock;
  using Job = std::function<void()>;

  // timeout <= 0: a job waits as long as it takes, and nothing expires.
  RequestQueue(std::size_t workers, std::chrono::milliseconds timeout);
  ~RequestQueue();
  RequestQueue(const RequestQueue&) = delete;
  RequestQueue& operator=(const RequestQueue&) = delete;

  // Exactly one of the two runs, once: run on a worker, or expire (on the sweeper thread) if the
  // job is still queued when the timeout has passed. A worker that takes a job whose time is up
  // expires it too, so the contract holds whoever gets there first. After stop(), neither runs.
  void push(Job run, Job expire);

  // Drops the jobs no worker has taken (destroying them unrun), then waits for the running ones.
  // Called by one thread (HttpServer::stop, then the destructor), never from inside a job: a
  // thread cannot join itself.
  void stop();

  std::uint64_t expired() const;

  // Lets every worker run only on `cpus` (server.worker_cpus). Called once, right after
  // construction.
  Status pin_workers(const std::vector<unsigned>& cpus);

 private:
  struct Entry {
    Clock::time_point deadline;
    Job run;
    Job expire;
  };

  void work();
  void sweep();
  Clock::time_point deadline_from(Clock::time_point now) const;

  const std::chrono::milliseconds timeout_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable sweep_cv_;
  std::deque<Entry> queue_;
  bool stopping_ = false;
  std::uint64_t expired_ = 0;
  std::vector<std::thread> workers_;
  std::thread sweeper_;
};

}  // namespace kekd::api
