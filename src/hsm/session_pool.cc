#include "session_pool.h"

#include <algorithm>

#include "ck_result.h"

namespace kekd::hsm {

SessionPool::SessionPool(const Module& module, CK_SLOT_ID slot, SecretBytes pin, Options options)
    : module_(module),
      slot_(slot),
      pin_(std::move(pin)),
      options_(options),
      handles_(options.size, CK_INVALID_HANDLE),
      leased_at_(options.size) {
  for (std::size_t i = options.size; i > 0; --i) {
    free_.push_back(i - 1);
  }
}

Result<std::unique_ptr<SessionPool>> SessionPool::open(const Module& module, CK_SLOT_ID slot,
                                                       SecretBytes pin, Options options) {
  if (options.size == 0) {
    return Error(Code::kInvalidArgument, "the session pool needs at least one session");
  }
  std::unique_ptr<SessionPool> pool(new SessionPool(module, slot, std::move(pin), options));
  for (std::size_t i = 0; i < options.size; ++i) {
    KEKD_ASSIGN_OR_RETURN(pool->handles_[i], pool->open_session());
  }
  return pool;
}

SessionPool::~SessionPool() {
  std::lock_guard lock(mu_);
  for (CK_SESSION_HANDLE h : handles_) {
    if (h != CK_INVALID_HANDLE) {
      module_.fn()->C_CloseSession(h);
    }
  }
}

Result<CK_SESSION_HANDLE> SessionPool::open_session() {
  if (pin_rejected_) {
    return Error(Code::kPinIncorrect,
                 "the token rejected the PIN earlier; kekd does not retry it (fix the PIN and "
                 "restart)");
  }
  if (!module_ready_) {
    // A re-initialisation failed after C_Finalize. No thread may call the module before it is
    // initialised again (PKCS#11 promises nothing then; SoftHSM would rebuild its state without
    // a lock), nor open a session on a slot it has not found again; only Pkcs11Hsm::heal() does
    // that.
    return Error(Code::kUnavailable,
                 "the PKCS#11 module is being re-initialised after a failure; retry later");
  }
  CK_FUNCTION_LIST* fn = module_.fn();
  CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
  CK_RV rv = fn->C_OpenSession(slot_, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &h);
  if (rv != CKR_OK) {
    return ck_error(rv, "C_OpenSession");
  }
  // C_Login takes a non-const pointer but does not write through it.
  rv = fn->C_Login(h, CKU_USER, const_cast<CK_UTF8CHAR*>(pin_.data()), pin_.size());
  if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
    Error error = ck_error(rv, "C_Login");
    if (error.code() == Code::kPinIncorrect) {
      pin_rejected_ = true;
    }
    fn->C_CloseSession(h);
    return error;
  }
  return h;
}

Result<SessionPool::Lease> SessionPool::acquire() {
  std::size_t index;
  CK_SESSION_HANDLE handle;
  {
    std::unique_lock lock(mu_);
    // While reinitialize() collects the sessions, a freed one is its: a thread that takes a
    // session back right after giving it up would otherwise keep it from ever having them all.
    bool freed = !free_.empty() && !draining_;
    if (!freed) {
      waits_++;
      waiting_++;  // counted only by a thread that must wait (has_waiters)
      freed = freed_.wait_for(lock, options_.acquire_timeout,
                              [this] { return !free_.empty() && !draining_; });
      waiting_--;
      if (handing_over_ > 0) taken_cv_.notify_all();
    }
    if (!freed) {
      acquire_timeouts_++;
      return Error(Code::kUnavailable, "no HSM session became free within " +
                                           std::to_string(options_.acquire_timeout.count()) +
                                           " ms: HSM calls are slow or not returning; retry later");
    }
    index = free_.back();
    free_.pop_back();
    handle = handles_[index];
    leased_at_[index] = Clock::now();
    taken_++;
    if (handing_over_ > 0) taken_cv_.notify_all();
  }
  if (handle == CK_INVALID_HANDLE) {
    Result<CK_SESSION_HANDLE> opened = open_session();
    if (!opened.ok()) {
      release(index, CK_INVALID_HANDLE, false, false);
      return opened.error();
    }
    handle = *opened;
    broken_--;
  }
  return Lease(this, index, handle);
}

void SessionPool::hand_over(Lease lease) {
  std::unique_lock lock(mu_);
  const std::uint64_t taken = taken_;
  handing_over_++;
  lock.unlock();
  { Lease given_back = std::move(lease); }  // release() takes mu_ and wakes a waiter
  lock.lock();
  taken_cv_.wait_for(lock, options_.acquire_timeout,
                     [&] { return taken_ != taken || waiting_ == 0; });
  handing_over_--;
}

void SessionPool::touch(const Lease& lease) {
  std::lock_guard lock(mu_);
  leased_at_[lease.index_] = Clock::now();
}

Status SessionPool::reopen_broken() {
  for (;;) {
    std::size_t index;
    {
      std::lock_guard lock(mu_);
      auto it = std::find_if(free_.begin(), free_.end(),
                             [this](std::size_t i) { return handles_[i] == CK_INVALID_HANDLE; });
      if (it == free_.end() || draining_) return ok_status();  // reinitialize() reopens them
      index = *it;
      free_.erase(it);
      // Reopening is an HSM call like any other: if it hangs, the watchdog must see it.
      leased_at_[index] = Clock::now();
    }
    Result<CK_SESSION_HANDLE> opened = open_session();
    if (!opened.ok()) {
      release(index, CK_INVALID_HANDLE, false, false);
      return opened.error();
    }
    broken_--;
    release(index, *opened, false, false);
  }
}

Status SessionPool::reinitialize(const std::function<Result<CK_SLOT_ID>()>& reinit) {
  std::vector<std::size_t> taken;
  {
    std::unique_lock lock(mu_);
    if (draining_) return Error(Code::kUnavailable, "the module is being re-initialised already");
    // Requests wait while this collects the sessions, so it waits at most a quarter of the
    // acquire timeout for them, and not at all behind a call already running that long (one that
    // hangs): requests that queue behind it still get their sessions within their timeout.
    const auto bound = options_.acquire_timeout / 4;
    const Clock::time_point now = Clock::now();
    for (std::chrono::milliseconds age : lease_ages(now)) {
      if (age > bound) {
        return Error(Code::kUnavailable, "an HSM call has been running for more than " +
                                             std::to_string(bound.count()) +
                                             " ms; the module was not re-initialised");
      }
    }
    draining_ = true;
    const Clock::time_point deadline = now + bound;
    while (taken.size() < handles_.size()) {
      if (free_.empty()) {
        waiting_++;
        bool freed = freed_.wait_until(lock, deadline, [this] { return !free_.empty(); });
        waiting_--;
        if (handing_over_ > 0) taken_cv_.notify_all();
        if (!freed) {
          // Give back what was taken: a call that runs this long is the watchdog's business.
          free_.insert(free_.end(), taken.begin(), taken.end());
          draining_ = false;
          lock.unlock();
          freed_.notify_all();
          return Error(Code::kUnavailable, "HSM sessions stayed in use for " +
                                               std::to_string(bound.count()) +
                                               " ms; the module was not re-initialised");
        }
      }
      taken.push_back(free_.back());
      free_.pop_back();
      leased_at_[taken.back()] = Clock::now();  // the watchdog times the re-initialisation too
      taken_++;
      if (handing_over_ > 0) taken_cv_.notify_all();
    }
  }
  // Every session is ours: no other thread can be inside the module now. The sessions count as
  // in use meanwhile, not as broken: readiness need not flap for a pause this short.
  std::vector<bool> was_broken(handles_.size());
  for (std::size_t i = 0; i < handles_.size(); ++i) {
    was_broken[i] = handles_[i] == CK_INVALID_HANDLE;
    if (!was_broken[i]) module_.fn()->C_CloseSession(handles_[i]);
  }
  Result<CK_SLOT_ID> slot = reinit();
  Status status = slot.ok() ? ok_status() : Status(slot.error());
  if (slot.ok()) slot_ = *slot;
  module_ready_ = slot.ok();
  for (std::size_t i = 0; i < handles_.size(); ++i) {
    Result<CK_SESSION_HANDLE> opened =
        status.ok() ? open_session() : Result<CK_SESSION_HANDLE>(status.error());
    if (!opened.ok()) {
      // Left broken (after the first failure, without trying: it would fail the same way), for
      // acquire() and reopen_broken() to open later.
      if (status.ok()) status = opened.error();
      handles_[i] = CK_INVALID_HANDLE;
      if (!was_broken[i]) broken_++;
      continue;
    }
    handles_[i] = *opened;
    if (was_broken[i]) broken_--;
  }
  {
    std::lock_guard lock(mu_);
    free_.insert(free_.end(), taken.begin(), taken.end());
    draining_ = false;
  }
  freed_.notify_all();
  return status;
}

SessionHealth SessionPool::health() const {
  SessionHealth h;
  h.size = handles_.size();
  h.broken = static_cast<std::size_t>(std::max(0, broken_.load()));
  h.acquire_timeouts = acquire_timeouts_;
  h.stall_threshold = options_.stall_threshold;
  const Clock::time_point now = Clock::now();
  std::lock_guard lock(mu_);
  h.leases = taken_;
  h.lease_waits = waits_;
  h.in_use = handles_.size() - free_.size();
  for (std::chrono::milliseconds age : lease_ages(now)) {
    h.longest_lease = std::max(h.longest_lease, age);
    if (age > options_.stall_threshold) h.stalled++;
  }
  return h;
}

std::vector<std::chrono::milliseconds> SessionPool::lease_ages(Clock::time_point now) const {
  // Leased indexes are those not in free_: mark the free ones, look at the rest.
  std::vector<bool> is_free(handles_.size(), false);
  for (std::size_t i : free_) is_free[i] = true;
  std::vector<std::chrono::milliseconds> ages;
  for (std::size_t i = 0; i < handles_.size(); ++i) {
    if (!is_free[i]) {
      ages.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(now - leased_at_[i]));
    }
  }
  return ages;
}

bool SessionPool::healthy() const {
  if (broken_ != 0) return false;
  return health().stalled == 0;
}

void SessionPool::release(std::size_t index, CK_SESSION_HANDLE handle, bool lost, bool failed) {
  if (failed && !lost) {
    module_.fn()->C_CloseSession(handle);
  }
  if (handle != CK_INVALID_HANDLE && (lost || failed)) {
    handle = CK_INVALID_HANDLE;
    broken_++;
  }
  bool draining;
  {
    std::lock_guard lock(mu_);
    handles_[index] = handle;
    free_.push_back(index);
    draining = draining_;
  }
  // One waiter can use the session, unless reinitialize() is collecting them: then the one
  // woken must be it, and only notify_all makes sure of that.
  if (draining) {
    freed_.notify_all();
  } else {
    freed_.notify_one();
  }
}

SessionPool::Lease::Lease(Lease&& other) noexcept
    : pool_(other.pool_),
      index_(other.index_),
      handle_(other.handle_),
      lost_(other.lost_),
      failed_(other.failed_) {
  other.pool_ = nullptr;
}

SessionPool::Lease::~Lease() {
  if (pool_ != nullptr) {
    pool_->release(index_, handle_, lost_, failed_);
  }
}

void SessionPool::Lease::report(CK_RV rv) {
  lost_ = lost_ || ck_session_lost(rv);
  failed_ = failed_ || ck_device_failed(rv);
}

}  // namespace kekd::hsm
