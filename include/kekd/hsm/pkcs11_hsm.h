// The Hsm capability on a real PKCS#11 module (SoftHSM in development and tests, a vendor's
// module in production), loaded by path.
//
// Every call runs on a session leased from a fixed pool. A call that finds its session lost is
// run once more on a fresh session; the pool replaces lost and failed sessions by itself, so the
// daemon recovers when the token comes back. Transient session objects (payloads on their way
// into C_WrapKey or out of C_UnwrapKey) are destroyed by a guard on every path; token objects
// (KEKs) are never destroyed by a destructor, only by destroy_kek.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "kekd/common/bytes.h"
#include "kekd/hsm/hsm.h"

namespace kekd::hsm {

class Module;
class SessionPool;

struct Pkcs11Config {
  std::string module_path = "/usr/lib/softhsm/libsofthsm2.so";
  std::string token_label = "kekd";
  SecretBytes pin;
  std::size_t sessions = 8;
  // An operation waits at most this long for a free session, then fails with kUnavailable.
  std::chrono::milliseconds acquire_timeout{2000};
  // A session held longer than this is a stuck HSM call: healthy() is false until it returns.
  std::chrono::milliseconds stall_threshold{2000};
  // A KEK must have been generated in the token and never been extractable (CKA_ALWAYS_SENSITIVE,
  // CKA_NEVER_EXTRACTABLE), or wrap and unwrap refuse it. Off only in the RFC 5649 oracle test,
  // which needs a KEK of known value; kekd never turns it off, and kekd.toml cannot.
  bool require_generated_keks = true;
  // Re-initialise the module (close every session, C_Finalize, C_Initialize, log in again) in
  // the first reinitialize_if_due() after this many transient objects, i.e. wraps and unwraps;
  // 0: never. Unset: 100,000 for SoftHSM, which frees its session objects only at C_Finalize
  // (~240 bytes each), 0 for other modules (docs/operations.md, "SoftHSM's memory").
  std::optional<std::uint64_t> reinitialize_after;
};

// The session pool as readiness and /metrics see it.
struct SessionHealth {
  std::size_t size = 0;     // sessions in the pool
  std::size_t in_use = 0;   // leased to an operation now
  std::size_t broken = 0;   // lost or failed, not yet reopened
  std::size_t stalled = 0;  // leased for longer than the stall threshold: a call that hangs
  std::chrono::milliseconds longest_lease{0};  // the oldest current lease (0: none)
  std::chrono::milliseconds stall_threshold{0};
  std::uint64_t acquire_timeouts = 0;  // operations refused for want of a session, since start
  // Sessions taken from the pool since start (a call, or a hold's first call, takes one), and
  // how many times a take found no session free and had to wait (timed out or not).
  std::uint64_t leases = 0;
  std::uint64_t lease_waits = 0;
  // Re-initialisations of the module (Pkcs11Config::reinitialize_after; 0: never), done and
  // failed, since start.
  std::uint64_t reinitialize_after = 0;
  std::uint64_t reinitializations = 0;
  std::uint64_t reinitialize_failures = 0;
};

class Pkcs11Hsm final : public Hsm {
 public:
  // Loads the module, finds the token by label, opens and logs in the sessions.
  static Result<std::unique_ptr<Pkcs11Hsm>> open(Pkcs11Config config);
  ~Pkcs11Hsm() override;

  Status generate_kek(std::string_view label) override;
  Result<std::vector<std::string>> find_keks(std::string_view prefix) override;
  Status destroy_kek(std::string_view label) override;
  Result<Bytes> wrap(std::string_view label, ByteView payload) override;
  Result<SecretBytes> unwrap(std::string_view label, ByteView wrapped) override;
  Result<SecretBytes> random(std::size_t n) override;
  Status generate_signing_key(std::string_view label) override;
  Result<Bytes> signing_public_key(std::string_view label) override;
  Result<Bytes> sign(std::string_view label, ByteView message) override;
  std::unique_ptr<SessionHold> hold_session() override;

  // True while every pooled session is usable and no call has been running for longer than the
  // stall threshold (readiness).
  bool healthy() const;
  SessionHealth health() const;
  // Reopens lost or failed sessions now rather than at the next request (SessionPool), and
  // re-initialises the module first if a re-initialisation failed after C_Finalize.
  Status heal();
  // Re-initialises the module if reinitialize_after transient objects have been made since the
  // last time (SessionPool::reinitialize); otherwise does nothing. Called by the daemon once a
  // second, on a thread that holds no session. Requests wait for a session meanwhile.
  Status reinitialize_if_due();

  // For tests of the adapter itself (tests/integration/hsm): the raw module and pool.
  Module& module();
  SessionPool& sessions();

 private:
  struct Impl;
  explicit Pkcs11Hsm(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
};

}  // namespace kekd::hsm
