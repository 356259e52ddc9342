// A fixed-size pool of logged-in PKCS#11 sessions, handed out as RAII leases.
//
// - Every session is opened read-write and logged in as the user. Login is per application in
//   PKCS#11, so later sessions see CKR_USER_ALREADY_LOGGED_IN, which is fine.
// - A lease that reports a lost session (closed under us, token removed) abandons the handle
//   without closing it: SoftHSM reuses handle numbers, so closing a stale handle could close a
//   session that another lease now holds. A lease that reports a device failure closes its session.
//   Either way the slot is reopened, and logged in again, by the next acquire().
// - A wrong PIN is never retried: once the token refuses it, every acquire() fails with
//   kPinIncorrect until the process is restarted with the right PIN. Retrying would lock the token.
// - Nothing here can interrupt a PKCS#11 call: the API has no way to cancel one. So the pool bounds
//   what it can (acquire() waits at most the acquire timeout, then kUnavailable) and watches what
//   it cannot: a lease held longer than the stall threshold is a call stuck in the module, and
//   makes the pool unhealthy (readiness false) until it ends (docs/operations.md, "When the HSM
//   hangs").
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "kekd/common/bytes.h"
#include "kekd/common/error.h"
#include "kekd/hsm/pkcs11_hsm.h"
#include "module.h"
#include "pkcs11.h"

namespace kekd::hsm {

class SessionPool {
 public:
  struct Options {
    std::size_t size = 8;
    // How long acquire() waits for a free session before it gives up with kUnavailable.
    std::chrono::milliseconds acquire_timeout{2000};
    // A lease held longer than this counts as a stuck HSM call (SessionHealth::stalled).
    std::chrono::milliseconds stall_threshold{2000};
  };

  // Opens options.size sessions on slot and logs in with pin. Fails if the first login fails.
  static Result<std::unique_ptr<SessionPool>> open(const Module& module, CK_SLOT_ID slot,
                                                   SecretBytes pin, Options options);
  ~SessionPool();
  SessionPool(const SessionPool&) = delete;
  SessionPool& operator=(const SessionPool&) = delete;

  class Lease {
   public:
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&&) = delete;
    Lease(const Lease&) = delete;
    ~Lease();

    CK_SESSION_HANDLE handle() const { return handle_; }

    // Tells the pool what a call on this session returned, so that a lost or failed session is
    // replaced. Return values that say nothing about the session are ignored.
    void report(CK_RV rv);

   private:
    friend class SessionPool;
    Lease(SessionPool* pool, std::size_t index, CK_SESSION_HANDLE handle)
        : pool_(pool), index_(index), handle_(handle) {}

    SessionPool* pool_;
    std::size_t index_;
    CK_SESSION_HANDLE handle_;
    bool lost_ = false;
    bool failed_ = false;
  };

  // A session for the caller's exclusive use until the lease ends. Waits for a free one up to
  // the acquire timeout (then kUnavailable).
  Result<Lease> acquire();

  // Restarts the stall clock of a lease that is kept across calls (a session hold): the watchdog
  // should time each call, not the whole batch.
  void touch(const Lease& lease);

  // True while some thread waits in acquire() for a session: a holder should give its own back.
  bool has_waiters() const { return waiting_ > 0; }

  // Gives a kept lease back for a thread that waits in acquire(), and returns once some thread
  // has taken a session (or nobody waits any more, or the acquire timeout has passed), so that
  // the caller's next acquire() queues behind the waiter instead of taking the session back
  // before the waiter has woken up.
  void hand_over(Lease lease);

  std::size_t size() const { return handles_.size(); }

  // False while a session is lost or failed and not yet replaced, or a lease has been held for
  // longer than the stall threshold.
  bool healthy() const;
  SessionHealth health() const;

  // Reopens every free slot whose session was lost or failed. acquire() does that too, but only
  // when a request comes: this lets readiness recover once the token is back even while no
  // traffic arrives (a load balancer sends none to an instance that is not ready). Stops at the
  // first failure; a wrong PIN is not retried here either.
  Status reopen_broken();

  // Takes every session as a lease would (waiting up to a quarter of the acquire timeout for
  // those in use; a hold gives its session back because this counts as a waiter, and acquire()
  // leaves freed sessions to this meanwhile), closes them all, runs reinit with no session open
  // in the process, and opens them again on the slot it returns. acquire() waits meanwhile.
  // Sessions that cannot be opened are left broken, for acquire() and reopen_broken() to retry
  // once the module is initialised. kUnavailable, with nothing changed, if a call was already
  // running longer than that quarter, or the sessions in use were not all given back within it;
  // otherwise what reinit returned. The caller must hold no session of this pool.
  //
  // Why: SoftHSM 2.6 keeps every session object a session ever created, destroyed or not, until
  // C_Finalize (softhsm/SoftHSMv2 issues 562 and 563), about 240 bytes per wrap or unwrap;
  // re-initialising the module is the only way to give that memory back (Pkcs11Hsm).
  Status reinitialize(const std::function<Result<CK_SLOT_ID>()>& reinit);

  // False after a reinitialize() whose reinit failed (the module not initialised again, or the
  // token not found again): no session opens, without a call into the module, until a
  // reinitialize() succeeds.
  bool module_ready() const { return module_ready_; }

 private:
  using Clock = std::chrono::steady_clock;
  SessionPool(const Module& module, CK_SLOT_ID slot, SecretBytes pin, Options options);

  // Opens and logs in a session for slot index (called without the lock held).
  Result<CK_SESSION_HANDLE> open_session();
  void release(std::size_t index, CK_SESSION_HANDLE handle, bool lost, bool failed);
  // How long each session now leased has been (under mu_).
  std::vector<std::chrono::milliseconds> lease_ages(Clock::time_point now) const;

  const Module& module_;
  CK_SLOT_ID slot_;  // changed only by reinitialize(), while it holds every session
  const SecretBytes pin_;
  const Options options_;

  mutable std::mutex mu_;
  std::condition_variable freed_;
  std::vector<CK_SESSION_HANDLE> handles_;    // CK_INVALID_HANDLE: to be reopened
  std::vector<std::size_t> free_;             // indexes of handles_ not leased
  std::vector<Clock::time_point> leased_at_;  // per index; meaningful while not in free_
  std::atomic<bool> pin_rejected_{false};
  std::atomic<int> broken_{0};
  std::atomic<std::uint64_t> acquire_timeouts_{0};
  std::atomic<int> waiting_{0};       // threads inside acquire()'s wait
  std::condition_variable taken_cv_;  // for hand_over: a session was taken or a waiter left
  std::uint64_t taken_ = 0;           // sessions acquired so far (under mu_)
  std::uint64_t waits_ = 0;           // acquires that found no free session (under mu_)
  int handing_over_ = 0;              // threads inside hand_over (under mu_)
  bool draining_ = false;             // reinitialize() is collecting the sessions (under mu_)
  // False after a reinitialize() whose reinit failed (see module_ready()).
  std::atomic<bool> module_ready_{true};
};

}  // namespace kekd::hsm
