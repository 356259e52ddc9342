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
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

#include "kekd/common/bytes.h"
#include "kekd/common/error.h"
#include "module.h"
#include "pkcs11.h"

namespace kekd::hsm {

class SessionPool {
 public:
  // Opens size sessions on slot and logs in with pin. Fails if the first login fails.
  static Result<std::unique_ptr<SessionPool>> open(const Module& module, CK_SLOT_ID slot,
                                                   SecretBytes pin, std::size_t size);
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

  std::size_t size() const { return handles_.size(); }

  // False once a session has been lost or failed and not yet successfully replaced.
  bool healthy() const { return broken_ == 0; }

  // Reopens every free slot whose session was lost or failed. acquire() does that too, but only
  // when a request comes: this lets readiness recover once the token is back even while no
  // traffic arrives (a load balancer sends none to an instance that is not ready). Stops at the
  // first failure; a wrong PIN is not retried here either.
  Status reopen_broken();

 private:
  SessionPool(const Module& module, CK_SLOT_ID slot, SecretBytes pin, std::size_t size);

  // Opens and logs in a session for slot index (called without the lock held).
  Result<CK_SESSION_HANDLE> open_session();
  void release(std::size_t index, CK_SESSION_HANDLE handle, bool lost, bool failed);

  const Module& module_;
  const CK_SLOT_ID slot_;
  const SecretBytes pin_;
  static constexpr std::chrono::seconds kAcquireTimeout{30};

  std::mutex mu_;
  std::condition_variable freed_;
  std::vector<CK_SESSION_HANDLE> handles_;  // CK_INVALID_HANDLE: to be reopened
  std::vector<std::size_t> free_;           // indexes of handles_ not leased
  std::atomic<bool> pin_rejected_{false};
  std::atomic<int> broken_{0};
};

}  // namespace kekd::hsm
