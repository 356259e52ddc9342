// The tamper-evident audit log (DESIGN §9, docs/audit.md): records in a hash chain, written with
// group commit, and checkpoints signed by the token's non-extractable ECDSA P-256 key.
//
// Group commit: record() queues the event and blocks; one writer thread takes everything queued,
// assigns seq, time, prev and hash, appends it in one store transaction (one fsync), and then wakes
// every caller of that batch. While a commit runs, new events queue for the next one, so the
// number of fsyncs grows with time, not with the number of records. Under load the writer may
// also wait up to commit_delay for a fuller batch before it commits (AuditOptions).
//
// Checkpoints: a second thread signs the chain head through hsm.sign when records have been added
// since the last checkpoint, at most one interval after the previous one (so at least once per
// interval while records arrive, never while idle), and close() signs a final one. Signing on its
// own thread keeps a slow HSM from delaying records.
//
// At open the log resumes from the store's last record, and signs a checkpoint of it at once if
// it is not covered yet (after a crash).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kekd/audit/record.h"
#include "kekd/audit/sink.h"
#include "kekd/common/error.h"
#include "kekd/common/time.h"
#include "kekd/hsm/hsm.h"
#include "kekd/store/audit_store.h"

namespace kekd::audit {

struct AuditOptions {
  // false is for benchmarks only: record() returns as soon as the event is queued, before it is
  // durable; a crash can lose the last records, and a store error reaches no caller (only
  // stats().failed_records).
  bool durable = true;
  // The longest time between two checkpoints while records arrive (DESIGN §9: one second).
  std::chrono::milliseconds checkpoint_interval{1000};
  // At most this many records per transaction; more wait for the next one.
  std::size_t max_batch = 4096;
  // Above this many queued events record() waits for room (it only matters with durable = false:
  // durable callers wait for their batch anyway).
  std::size_t max_queue = 65536;
  // Group commit with a wait: when the last transaction held 4 records or more (records arrive
  // together) and fewer than that are queued, the writer waits up to this long for the queue to
  // reach the last batch's size before it commits. 0: commit at once. kekd's default is the
  // config's (audit.commit_delay_us).
  std::chrono::microseconds commit_delay{0};
  // Record and checkpoint times. Tests replace it; times along the chain never decrease even if
  // it does.
  std::function<UnixMillis()> clock = now_millis;
};

struct AuditStats {
  std::uint64_t records = 0;               // records committed by this log
  std::uint64_t transactions = 0;          // store transactions that committed them
  std::uint64_t commit_waits = 0;          // waits before a commit for a fuller batch
  std::uint64_t commit_wait_timeouts = 0;  // of those, the ones commit_delay ended unfilled
  std::uint64_t failed_records = 0;        // records whose batch the store refused
  std::uint64_t checkpoints = 0;           // checkpoints signed and stored
  std::uint64_t failed_checkpoints = 0;    // attempts that failed (HSM or store); retried later
  std::int64_t last_seq = 0;               // the chain head
  std::int64_t last_checkpoint_seq = 0;    // the record the last checkpoint covers
  std::size_t queued = 0;                  // events waiting for the next batch, now
};

class AuditLog final : public AuditSink {
 public:
  // Resumes from store.last_audit() and starts the writer and checkpointer threads. Fails if the
  // store cannot be read or the token has no signing key under signing_label.
  static Result<std::unique_ptr<AuditLog>> open(store::AuditStore& store, hsm::Hsm& hsm,
                                                std::string signing_label,
                                                AuditOptions options = {});

  // Calls close().
  ~AuditLog() override;
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Appends the event as the next record and returns once it is durable (options.durable). On a
  // store error every caller of that batch gets the error (kUnavailable for an outage: the API
  // answers 503) and the chain does not advance. kInvalidArgument for an event out of bounds
  // (record.h); kUnavailable after close() has begun.
  Status record(AuditEvent event) override;

  // As record(), for several events queued together and waited for once (AuditSink).
  Status record_all(std::vector<AuditEvent> events) override;
  void submit(std::vector<AuditEvent> events, std::function<void(Status)> on_durable) override;

  // Commits everything queued, stops the threads and signs a final checkpoint if the head is not
  // covered yet. Returns the outcome of that checkpoint. Idempotent; safe from any thread.
  Status close();

  AuditStats stats() const;

 private:
  // One per record() or record_all() call, on the caller's stack: the writer counts its events
  // down, keeps the first error, and wakes this caller alone when none is left. (One condition
  // variable for all callers would wake every waiting request thread at every commit: on a
  // small machine that herd costs more than the commit.)
  // submit()'s waiter lives on the heap and carries a callback instead: the writer calls it,
  // outside the lock, and deletes the waiter.
  struct Waiter {
    std::size_t pending = 0;
    Status status;
    std::condition_variable done;
    std::function<void(Status)> on_durable;
  };
  struct Entry {
    AuditEvent event;
    Waiter* waiter;  // null for durable = false
  };
  struct Head {
    std::int64_t seq = 0;
    std::string hash;
    UnixMillis time = 0;
  };

  AuditLog(store::AuditStore& store, hsm::Hsm& hsm, std::string signing_label, AuditOptions options,
           Head head, std::int64_t checkpoint_seq);

  // Normalizes the events and queues them for `waiter` (waiter->pending counts what is queued and
  // not yet committed). An error for an invalid event, or once closing (then the events queued
  // before stay queued). Called with mu_ held through `lock`.
  Status enqueue(std::vector<AuditEvent>& events, Waiter* waiter,
                 std::unique_lock<std::mutex>& lock);
  void write_loop();
  void checkpoint_loop();
  // Sequences and appends a batch, re-sequencing after another writer moved the store's head.
  // Runs on the writer thread, which alone changes head_.
  Status commit(const std::deque<Entry>& batch);
  Status reload_head();
  Status write_checkpoint(const Head& head);

  store::AuditStore& store_;
  hsm::Hsm& hsm_;
  const std::string signing_label_;
  const AuditOptions options_;

  Head head_;  // the writer thread's view of the chain head

  mutable std::mutex mu_;
  std::condition_variable work_cv_;        // the writer: events queued, or closing
  std::condition_variable room_cv_;        // callers waiting for room in the queue, or closing
  std::condition_variable checkpoint_cv_;  // the checkpointer: the head moved, or stopping
  std::deque<Entry> queue_;
  bool closing_ = false;            // no new events; the writer drains the queue and exits
  bool stop_checkpointer_ = false;  // set once the writer has exited
  bool checkpointer_idle_ = false;  // it waits for a commit, not for its interval (under mu_)
  // While the writer waits out commit_delay: enqueue wakes it only once this many are queued.
  std::size_t delay_target_ = 0;
  std::size_t last_batch_ = 0;  // records in the writer's last transaction
  Head committed_;              // the head as of the last commit, for the checkpointer
  std::int64_t checkpoint_seq_ = 0;
  AuditStats stats_;

  std::mutex close_mu_;
  bool closed_ = false;
  Status close_status_;

  std::thread writer_;
  std::thread checkpointer_;
};

}  // namespace kekd::audit
