// kekd.toml: the daemon's configuration (DESIGN §14; every key documented in
// hsm-config/kekd.example.toml). Loading validates everything up front, so that a mistake is a
// clear message at start, not a surprise under load. Relative paths are taken relative to the
// config file's directory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kekd/common/error.h"
#include "kekd/common/time.h"

namespace kekd::daemon {

struct ServerConfig {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8200;
  std::string tls_cert;
  std::string tls_key;
  std::string client_ca;
  bool allow_plaintext = false;
  std::size_t io_threads = 0;  // 0: one per four CPUs, at least one (io_threads_for)
  std::size_t workers = 0;     // 0: as many as HSM sessions
  // The CPUs the workers may run on; empty: any (docs/operations.md, "Confining the workers to
  // one CPU"). Whether this machine has them is checked at `kekd serve`, not here.
  std::vector<unsigned> worker_cpus;
  std::size_t max_connections = 1024;
  std::size_t header_limit = 8 * 1024;
  std::size_t body_limit = 1024 * 1024;
  UnixMillis read_timeout = 10'000;
  UnixMillis idle_timeout = 60'000;
  UnixMillis drain_timeout = 15'000;
};

struct HsmConfig {
  std::string module = "/usr/lib/softhsm/libsofthsm2.so";
  std::string token_label = "kekd";
  std::string pin_file;
  std::string pin_env = "KEKD_HSM_PIN";
  std::size_t sessions = 8;
  // A request waits at most this long for an HSM session (and for a worker, each of which calls
  // the HSM), then gets 503 (docs/operations.md, "When the HSM hangs").
  UnixMillis acquire_timeout = 2'000;
  // An HSM call running longer than this makes kekd not ready until it returns; it is also how
  // long shutdown waits for HSM calls after the drain.
  UnixMillis stall_threshold = 2'000;
  // Transient HSM objects (wraps, unwraps) after which the module is re-initialised to give back
  // what it keeps of them; 0: never; unset ("auto"): the HSM layer's choice for the module
  // (hsm::Pkcs11Config::reinitialize_after).
  std::optional<std::uint64_t> reinitialize_after;
};

struct CeremonyConfig {
  UnixMillis ttl = 24 * 3'600'000LL;
  UnixMillis min_destroy_delay = 7 * 86'400'000LL;
  UnixMillis default_destroy_delay = 30 * 86'400'000LL;
};

// How requests wait for their audit records (docs/audit.md, "Durability").
enum class AuditMode {
  kDurable,  // answered only once the record is durable (the default, DESIGN §9)
  kAsync,    // answered once the record is queued: a crash can lose the last records
  kOff,      // no records at all: only in builds for benchmarks (KEKD_BENCHMARK_AUDIT_OFF)
};

struct AuditConfig {
  AuditMode mode = AuditMode::kDurable;
  // audit::AuditOptions::commit_delay, in microseconds; 0 commits at once. The default was
  // measured (docs/performance.md, "Group commit with a wait").
  std::size_t commit_delay_us = 200;
};

// The AWS KMS-compatible API (docs/aws-kms.md): the region clients sign for, and the account
// in the ARNs it answers with.
struct KmsConfig {
  std::string region = "us-east-1";
  std::string account = "000000000000";
};

struct Config {
  std::string path;  // the file it was loaded from
  ServerConfig server;
  HsmConfig hsm;
  std::string store_path = "var/kekd.db";
  CeremonyConfig ceremony;
  AuditConfig audit;
  KmsConfig kms;
  std::string log_level = "info";
};

Result<Config> load_config(const std::string& path);
Result<Config> parse_config(std::string_view toml_text, const std::string& base_dir);

// True for addresses that only this host can reach (127.0.0.0/8, ::1, localhost).
bool is_loopback(const std::string& host);

// The I/O threads to run for server.io_threads = `configured` on `cpus` CPUs (0: unknown): the
// configured number, or for 0 one per four CPUs and at least one. I/O threads share one
// io_context, and each one more than the load needs costs a wake-up handed between them on many
// requests, while one thread carries over 10,000 requests/s (docs/operations.md, "How many I/O
// threads").
std::size_t io_threads_for(std::size_t configured, unsigned cpus);

}  // namespace kekd::daemon
