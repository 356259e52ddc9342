#include "kekd/audit/audit_log.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <iterator>
#include <optional>
#include <utility>
#include <vector>

#include "kekd/common/thread_name.h"

namespace kekd::audit {
namespace {

// A store that keeps refusing batches because another writer keeps moving the head is given up
// on after this many tries; the callers get kUnavailable and may retry.
constexpr int kCommitAttempts = 8;

// The commit delay applies only after a transaction of at least this many records (PostgreSQL's
// commit_siblings): with two or three clients the wait cost them more in latency than the fuller
// transactions saved (docs/performance.md, "Group commit with a wait").
constexpr std::size_t kCommitDelayMinBatch = 4;

ByteView bytes_of(std::string_view s) {
  return ByteView(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
}

// The time of a stored record, so that times along the chain keep not decreasing across a
// restart even if the clock went back. 0 (no constraint) if the record is unreadable: the
// verifier, not the writer, is where damage is reported.
UnixMillis record_time(const std::string& record) {
  nlohmann::json j = nlohmann::json::parse(record, nullptr, false);
  if (!j.is_object()) {
    return 0;
  }
  auto it = j.find("time");
  if (it == j.end() || !it->is_string()) {
    return 0;
  }
  return parse_time(it->get<std::string>()).value_or(0);
}

}  // namespace

Result<std::unique_ptr<AuditLog>> AuditLog::open(store::AuditStore& store, hsm::Hsm& hsm,
                                                 std::string signing_label, AuditOptions options) {
  if (options.max_batch == 0 || options.max_batch > store::kMaxAuditBatch ||
      options.max_queue == 0 || options.checkpoint_interval.count() <= 0 || !options.clock) {
    return Error(Code::kInvalidArgument, "audit: invalid options");
  }
  // Checked now rather than at the first checkpoint: a missing key is a deployment error that
  // should stop kekd at start, not show up later as an unsigned log.
  KEKD_RETURN_IF_ERROR(hsm.signing_public_key(signing_label));
  KEKD_ASSIGN_OR_RETURN(std::optional<store::AuditRecordRow> last, store.last_audit());
  Head head{0, std::string(kGenesisHash), 0};
  if (last) {
    head = Head{last->seq, last->hash, record_time(last->record)};
  }
  KEKD_ASSIGN_OR_RETURN(std::optional<store::AuditCheckpointRow> checkpoint,
                        store.last_audit_checkpoint());
  return std::unique_ptr<AuditLog>(new AuditLog(store, hsm, std::move(signing_label),
                                                std::move(options), std::move(head),
                                                checkpoint ? checkpoint->seq : 0));
}

AuditLog::AuditLog(store::AuditStore& store, hsm::Hsm& hsm, std::string signing_label,
                   AuditOptions options, Head head, std::int64_t checkpoint_seq)
    : store_(store),
      hsm_(hsm),
      signing_label_(std::move(signing_label)),
      options_(std::move(options)),
      head_(head),
      committed_(head),
      checkpoint_seq_(checkpoint_seq) {
  stats_.last_seq = head.seq;
  stats_.last_checkpoint_seq = checkpoint_seq;
  writer_ = std::thread([this] {
    name_this_thread("kekd-audit");
    write_loop();
  });
  checkpointer_ = std::thread([this] {
    name_this_thread("kekd-checkpoint");
    checkpoint_loop();
  });
}

AuditLog::~AuditLog() {
  // The outcome of the final checkpoint has nobody to go to here; callers who care call close().
  (void)close();
}

Status AuditLog::record(AuditEvent event) {
  std::vector<AuditEvent> events;
  events.push_back(std::move(event));
  return record_all(std::move(events));
}

Status AuditLog::enqueue(std::vector<AuditEvent>& events, Waiter* waiter,
                         std::unique_lock<std::mutex>& lock) {
  for (AuditEvent& event : events) {
    room_cv_.wait(lock, [&] { return closing_ || queue_.size() < options_.max_queue; });
    if (closing_) {
      return Error(Code::kUnavailable, "audit: the log is closed");
    }
    queue_.push_back(Entry{std::move(event), options_.durable ? waiter : nullptr});
    if (options_.durable) {
      ++waiter->pending;
    }
    // A writer that waits out commit_delay is woken only when its batch is full: waking it for
    // every event would cost the context switches the wait is there to save.
    if (delay_target_ == 0 || queue_.size() >= delay_target_) {
      work_cv_.notify_one();
    }
  }
  return ok_status();
}

Status AuditLog::record_all(std::vector<AuditEvent> events) {
  // Every event is checked before any is queued, so that a bad one records nothing.
  for (AuditEvent& event : events) {
    KEKD_ASSIGN_OR_RETURN(event, normalize(std::move(event)));
  }
  Waiter waiter;
  std::unique_lock lock(mu_);
  Status queued = enqueue(events, &waiter, lock);
  // The writer counts pending down under mu_ and never touches the waiter once it is 0, so it
  // can live on this stack. Events queued before a close are still committed: wait for them.
  waiter.done.wait(lock, [&] { return waiter.pending == 0; });
  return queued.ok() ? waiter.status : queued;
}

void AuditLog::submit(std::vector<AuditEvent> events, std::function<void(Status)> on_durable) {
  for (AuditEvent& event : events) {
    Result<AuditEvent> normalized = normalize(std::move(event));
    if (!normalized.ok()) {
      on_durable(normalized.error());
      return;
    }
    event = std::move(*normalized);
  }
  // pending starts at 1, for this call: the writer cannot finish the waiter while events are
  // still being queued (enqueue may wait for room, releasing the lock).
  auto* waiter = new Waiter;
  waiter->pending = 1;
  waiter->on_durable = std::move(on_durable);
  std::unique_lock lock(mu_);
  Status queued = enqueue(events, waiter, lock);
  if (!queued.ok() && waiter->status.ok()) {
    waiter->status = queued;
  }
  if (--waiter->pending > 0) {
    return;  // the writer calls it back and deletes it after the last commit
  }
  lock.unlock();
  waiter->on_durable(waiter->status);  // everything committed already, or nothing queued
  delete waiter;
}

void AuditLog::write_loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [&] { return !queue_.empty() || closing_; });
    if (queue_.empty()) {
      return;  // closing, and everything queued before is committed
    }
    // Group commit with a wait (PostgreSQL's commit_delay): if the last transaction held several
    // records, other requests are in flight, and committing the few queued now would make their
    // records wait for one more fsync after this one. Waiting up to commit_delay for as many as
    // last time makes fewer, fuller transactions, and costs fewer fsyncs and wake-ups of this
    // thread. Measured in docs/performance.md ("Group commit with a wait"): a lower p99 at 8
    // and 32 connections and behind a slow HSM, throughput the same or better.
    const std::size_t target = std::min(last_batch_, options_.max_batch);
    if (options_.commit_delay.count() > 0 && target >= kCommitDelayMinBatch &&
        queue_.size() < target && !closing_) {
      delay_target_ = target;
      const bool filled = work_cv_.wait_for(lock, options_.commit_delay,
                                            [&] { return closing_ || queue_.size() >= target; });
      delay_target_ = 0;
      stats_.commit_waits += 1;
      if (!filled) stats_.commit_wait_timeouts += 1;
    }
    // Everything queued so far (up to max_batch) is one batch; whatever arrives during the
    // commit below queues for the next one.
    const auto n = static_cast<std::ptrdiff_t>(std::min(queue_.size(), options_.max_batch));
    std::deque<Entry> batch(std::make_move_iterator(queue_.begin()),
                            std::make_move_iterator(queue_.begin() + n));
    queue_.erase(queue_.begin(), queue_.begin() + n);
    last_batch_ = static_cast<std::size_t>(n);
    lock.unlock();
    Status status = commit(batch);
    std::vector<Waiter*> finished;  // submit()'s callers whose last event this batch was
    lock.lock();
    for (Entry& entry : batch) {
      if (entry.waiter != nullptr) {
        if (!status.ok() && entry.waiter->status.ok()) {
          entry.waiter->status = status;
        }
        if (--entry.waiter->pending == 0) {
          if (entry.waiter->on_durable) {
            finished.push_back(entry.waiter);
          } else {
            entry.waiter->done.notify_one();  // under mu_: the waiter outlives this call
          }
        }
      }
    }
    if (status.ok()) {
      stats_.records += batch.size();
      stats_.transactions += 1;
      stats_.last_seq = head_.seq;
      committed_ = head_;
      // Only an idle checkpointer needs waking: one waiting for its interval to end wakes by
      // itself, and waking it per commit cost a context switch per batch under load.
      if (checkpointer_idle_) checkpoint_cv_.notify_one();
    } else {
      stats_.failed_records += batch.size();
    }
    room_cv_.notify_all();  // callers waiting for room in the queue (only with durable = false)
    if (!finished.empty()) {
      lock.unlock();
      for (Waiter* waiter : finished) {
        waiter->on_durable(waiter->status);
        delete waiter;
      }
      lock.lock();
    }
  }
}

Status AuditLog::commit(const std::deque<Entry>& batch) {
  Status status;
  for (int attempt = 0; attempt < kCommitAttempts; ++attempt) {
    // One time for the batch: the records were sequenced together. Never before the head's time,
    // so times along the chain do not decrease when the clock steps back.
    const UnixMillis now = std::max(options_.clock(), head_.time);
    Head next = head_;
    std::vector<store::AuditRecordRow> rows;
    rows.reserve(batch.size());
    for (const Entry& entry : batch) {
      std::string text = canonical_json(make_record(entry.event, next.seq + 1, now, next.hash));
      next = Head{next.seq + 1, sha256_hex(text), now};
      rows.push_back(store::AuditRecordRow{next.seq, std::move(text), next.hash});
    }
    // head_ changes only when the store has the batch: a failed commit leaves the chain where
    // it was, and the next batch takes the same seqs.
    status = store_.append_audit(head_.hash, rows);
    if (status.ok()) {
      head_ = std::move(next);
      return status;
    }
    if (status.error().code() != Code::kFailedPrecondition) {
      return status;
    }
    // Another writer extended the chain (or a commit reported as failed had in fact landed):
    // continue from what the store holds.
    KEKD_RETURN_IF_ERROR(reload_head());
  }
  return Error(Code::kUnavailable, "audit: " + status.error().message());
}

Status AuditLog::reload_head() {
  KEKD_ASSIGN_OR_RETURN(std::optional<store::AuditRecordRow> last, store_.last_audit());
  if (!last) {
    head_ = Head{0, std::string(kGenesisHash), head_.time};
  } else {
    head_ = Head{last->seq, last->hash, std::max(head_.time, record_time(last->record))};
  }
  return ok_status();
}

void AuditLog::checkpoint_loop() {
  using Clock = std::chrono::steady_clock;
  std::optional<Clock::time_point> last_attempt;  // none yet: the first one may start at once
  std::unique_lock lock(mu_);
  for (;;) {
    if (stop_checkpointer_) {
      return;  // close() signs the final checkpoint itself, after the writer has drained
    }
    if (committed_.seq <= checkpoint_seq_) {
      checkpointer_idle_ = true;
      checkpoint_cv_.wait(lock);  // nothing new: no checkpoint while idle
      checkpointer_idle_ = false;
      continue;
    }
    if (last_attempt) {
      const Clock::time_point due = *last_attempt + options_.checkpoint_interval;
      if (Clock::now() < due) {
        checkpoint_cv_.wait_until(lock, due);
        continue;
      }
    }
    // Measured from the start of an attempt, so a slow signature does not stretch the interval;
    // a failed attempt (HSM or store down) also waits an interval before the next.
    last_attempt = Clock::now();
    const Head head = committed_;
    lock.unlock();
    Status status = write_checkpoint(head);
    lock.lock();
    if (status.ok()) {
      checkpoint_seq_ = head.seq;
      stats_.checkpoints += 1;
      stats_.last_checkpoint_seq = head.seq;
    } else {
      stats_.failed_checkpoints += 1;
    }
  }
}

Status AuditLog::write_checkpoint(const Head& head) {
  Checkpoint checkpoint;
  checkpoint.seq = head.seq;
  checkpoint.hash = head.hash;
  checkpoint.time = options_.clock();
  // The store's last checkpoint, not this log's memory of it: the chain of checkpoints must be
  // the one the store holds.
  KEKD_ASSIGN_OR_RETURN(std::optional<store::AuditCheckpointRow> previous,
                        store_.last_audit_checkpoint());
  checkpoint.prev_seq = previous ? previous->seq : 0;
  const std::string message =
      checkpoint_message(head.seq, head.hash, checkpoint.prev_seq, format_time(checkpoint.time));
  KEKD_ASSIGN_OR_RETURN(checkpoint.signature, hsm_.sign(signing_label_, bytes_of(message)));
  return store_.append_audit_checkpoint(
      store::AuditCheckpointRow{head.seq, checkpoint_json(checkpoint)}, head.hash,
      checkpoint.prev_seq);
}

Status AuditLog::close() {
  std::lock_guard close_lock(close_mu_);
  if (closed_) {
    return close_status_;
  }
  {
    std::lock_guard lock(mu_);
    closing_ = true;
  }
  work_cv_.notify_all();
  room_cv_.notify_all();  // callers waiting for room in the queue give up
  writer_.join();         // commits everything queued before closing_ was set
  {
    std::lock_guard lock(mu_);
    stop_checkpointer_ = true;
  }
  checkpoint_cv_.notify_all();
  checkpointer_.join();
  Head head;
  std::int64_t covered = 0;
  {
    std::lock_guard lock(mu_);
    head = committed_;
    covered = checkpoint_seq_;
  }
  close_status_ = ok_status();
  if (head.seq > covered) {
    close_status_ = write_checkpoint(head);
    std::lock_guard lock(mu_);
    if (close_status_.ok()) {
      checkpoint_seq_ = head.seq;
      stats_.checkpoints += 1;
      stats_.last_checkpoint_seq = head.seq;
    } else {
      stats_.failed_checkpoints += 1;
    }
  }
  closed_ = true;
  return close_status_;
}

AuditStats AuditLog::stats() const {
  std::lock_guard lock(mu_);
  AuditStats stats = stats_;
  stats.queued = queue_.size();
  return stats;
}

}  // namespace kekd::audit
