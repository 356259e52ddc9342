// Shared by the audit tests: a real SQLite store in a temporary directory, the in-memory HSM with
// kekd's signing key, a store wrapper that fails or stalls on demand, and a builder for logs with
// records and checkpoints at known places (for tampering tests).
#pragma once

#include <doctest/doctest.h>

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kekd/audit/export.h"
#include "kekd/audit/record.h"
#include "kekd/audit/verify.h"
#include "kekd/store/sqlite_store.h"
#include "support/memory_hsm.h"
#include "support/temp_dir.h"

namespace kekd::testing {

inline constexpr std::string_view kAuditLabel = "kekd-internal:audit";
// 2026-11-23T10:00:00Z
inline constexpr UnixMillis kAuditT0 = 1'795'428'000'000;

inline ByteView bytes_of(std::string_view s) {
  return ByteView(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
}

inline void require_ok(const Status& status) {
  REQUIRE_MESSAGE(status.ok(), status.error().to_string());
}

inline audit::AuditEvent audit_event(std::string principal, std::string request_id,
                                     std::string action = "key.wrap") {
  audit::AuditEvent e;
  e.principal = std::move(principal);
  e.request_id = std::move(request_id);
  e.action = std::move(action);
  e.key = "payments";
  e.version = 1;
  return e;
}

struct AuditFixture {
  TempDir dir;
  std::unique_ptr<store::SqliteStore> store;
  MemoryHsm hsm;
  Bytes spki;

  AuditFixture() {
    store = open_store();
    require_ok(hsm.generate_signing_key(kAuditLabel));
    auto key = hsm.signing_public_key(kAuditLabel);
    REQUIRE(key.ok());
    spki = *key;
  }

  std::string db_path() const { return dir.file("kekd.db"); }

  std::unique_ptr<store::SqliteStore> open_store() const {
    auto opened = store::SqliteStore::open(db_path());
    REQUIRE_MESSAGE(opened.ok(), opened.error().to_string());
    return std::move(opened).value();
  }

  audit::VerifyResult verify_store(audit::VerifyOptions options = {}) {
    auto result = audit::verify_store(*store, spki, std::move(options));
    REQUIRE_MESSAGE(result.ok(), result.error().to_string());
    return *result;
  }
};

// Every line of the export, page by page (small pages, so paging is exercised).
inline std::vector<std::string> export_all(store::AuditStore& store, std::size_t page = 7) {
  std::vector<std::string> lines;
  std::int64_t after = 0;
  for (;;) {
    auto next = audit::export_page(store, after, page);
    REQUIRE_MESSAGE(next.ok(), next.error().to_string());
    if (next->lines.empty()) {
      return lines;
    }
    lines.insert(lines.end(), next->lines.begin(), next->lines.end());
    after = next->next;
  }
}

inline audit::VerifyResult verify_lines(const std::vector<std::string>& lines, ByteView key,
                                        audit::VerifyOptions options = {}) {
  auto verifier = audit::Verifier::create(key, std::move(options));
  REQUIRE_MESSAGE(verifier.ok(), verifier.error().to_string());
  for (const std::string& line : lines) {
    if (!verifier->add_line(line)) {
      break;
    }
  }
  return verifier->finish();
}

// A signed checkpoint of (seq, hash) at time t after the one at prev_seq, as the log writes it.
inline store::AuditCheckpointRow signed_checkpoint(hsm::Hsm& hsm, std::int64_t seq,
                                                   const std::string& hash, std::int64_t prev_seq,
                                                   UnixMillis t) {
  audit::Checkpoint c;
  c.seq = seq;
  c.hash = hash;
  c.prev_seq = prev_seq;
  c.time = t;
  auto signature = hsm.sign(
      kAuditLabel, bytes_of(audit::checkpoint_message(seq, hash, prev_seq, audit::format_time(t))));
  REQUIRE(signature.ok());
  c.signature = *signature;
  return store::AuditCheckpointRow{seq, audit::checkpoint_json(c)};
}

// Appends records `from`..`to` (record i at kAuditT0 + i seconds, principal "client-<i>") and a
// checkpoint, 100 ms after its record, of every record whose seq is a multiple of `every`.
// Returns the hash of the last record.
inline std::string build_log(store::AuditStore& store, hsm::Hsm& hsm, std::int64_t to,
                             std::int64_t every, std::int64_t from = 1) {
  auto last = store.last_audit();
  REQUIRE(last.ok());
  std::string prev = *last ? (*last)->hash : std::string(audit::kGenesisHash);
  for (std::int64_t seq = from; seq <= to; ++seq) {
    audit::AuditEvent e =
        audit_event("client-" + std::to_string(seq), "req-" + std::to_string(seq));
    if (seq % 3 == 0) {
      e.error = Code::kPermissionDenied;
      e.key.reset();
      e.version.reset();
    }
    const UnixMillis t = kAuditT0 + seq * 1000;
    std::string text = audit::canonical_json(audit::make_record(e, seq, t, prev));
    std::string hash = audit::sha256_hex(text);
    require_ok(store.append_audit(prev, {store::AuditRecordRow{seq, text, hash}}));
    if (every > 0 && seq % every == 0) {
      auto previous = store.last_audit_checkpoint();
      REQUIRE(previous.ok());
      const std::int64_t prev_seq = *previous ? (*previous)->seq : 0;
      require_ok(store.append_audit_checkpoint(signed_checkpoint(hsm, seq, hash, prev_seq, t + 100),
                                               hash, prev_seq));
    }
    prev = hash;
  }
  return prev;
}

// Forwards to a real store; can fail appends, or hold them until released, on demand.
class ControlledAuditStore final : public store::AuditStore {
 public:
  explicit ControlledAuditStore(store::AuditStore& real) : real_(real) {}

  // Every append (records) fails with this error while set.
  void fail_appends(std::optional<Error> error) {
    std::lock_guard lock(mu_);
    failure_ = std::move(error);
  }
  // Appends wait in the store until release() while held.
  void hold() {
    std::lock_guard lock(mu_);
    held_ = true;
  }
  void release() {
    {
      std::lock_guard lock(mu_);
      held_ = false;
    }
    cv_.notify_all();
  }
  int appends_started() {
    std::lock_guard lock(mu_);
    return appends_;
  }

  Status append_audit(std::string_view prev,
                      const std::vector<store::AuditRecordRow>& records) override {
    std::optional<Error> failure;
    {
      std::unique_lock lock(mu_);
      appends_ += 1;
      cv_.notify_all();
      cv_.wait(lock, [&] { return !held_; });
      failure = failure_;
    }
    if (failure) {
      return *failure;
    }
    return real_.append_audit(prev, records);
  }
  Status append_audit_checkpoint(const store::AuditCheckpointRow& c, std::string_view hash,
                                 std::int64_t prev_seq) override {
    return real_.append_audit_checkpoint(c, hash, prev_seq);
  }
  Result<std::optional<store::AuditRecordRow>> last_audit() override { return real_.last_audit(); }
  Result<std::optional<store::AuditCheckpointRow>> last_audit_checkpoint() override {
    return real_.last_audit_checkpoint();
  }
  Result<store::AuditPage> read_audit(std::int64_t after, std::size_t limit) override {
    return real_.read_audit(after, limit);
  }

  // Waits until at least n appends have started.
  void wait_for_appends(int n) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return appends_ >= n; });
  }

 private:
  store::AuditStore& real_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<Error> failure_;
  bool held_ = false;
  int appends_ = 0;
};

}  // namespace kekd::testing
