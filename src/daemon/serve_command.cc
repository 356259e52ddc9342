#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <thread>

#include "kekd/api/api.h"
#include "kekd/api/server.h"
#include "kekd/audit/audit_log.h"
#include "kekd/common/thread_affinity.h"
#include "kekd/daemon/commands.h"
#include "kekd/daemon/deployment.h"
#include "metered_hsm.h"

namespace kekd::daemon {
namespace {

// Runs the ceremony service's periodic work (expiry, retries, scheduled destruction) once a
// second, on its own thread, until stopped.
class Ticker {
 public:
  Ticker(quorum::CeremonyService& ceremonies, hsm::Pkcs11Hsm& hsm)
      : thread_([this, &ceremonies, &hsm] {
          std::unique_lock lock(mu_);
          while (!cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stop_; })) {
            lock.unlock();
            Status status = ceremonies.tick();
            if (!status.ok()) spdlog::warn("ceremony tick: {}", status.error().to_string());
            // SoftHSM's memory (hsm.reinitialize_after) is given back here, on a thread that
            // holds no HSM session, rather than on a worker in the middle of a request.
            Status reinit = hsm.reinitialize_if_due();
            if (!reinit.ok()) last_reinit_error_ = reinit.error().to_string();
            // Lost sessions come back by themselves once the token does, traffic or not. (A
            // stalled call is not healed: nothing can interrupt it; it ends when the HSM answers.)
            // Not in the second after a failed re-initialisation: heal() would only repeat it.
            if (reinit.ok() && hsm.health().broken > 0) {
              Status healed = hsm.heal();
              if (!healed.ok()) spdlog::debug("HSM sessions: {}", healed.error().to_string());
            }
            report_reinitializations(hsm.health());
            lock.lock();
          }
        }) {}
  ~Ticker() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  // The HSM layer does not log; its re-initialisations (hsm.reinitialize_after) are logged here,
  // at most once a second, so that a pause in the latencies can be matched to one.
  void report_reinitializations(const hsm::SessionHealth& h) {
    if (h.reinitializations != reinitializations_) {
      spdlog::info(
          "re-initialised the PKCS#11 module ({} so far; hsm.reinitialize_after = {}: "
          "docs/operations.md, \"SoftHSM's memory\")",
          h.reinitializations, h.reinitialize_after);
      reinitializations_ = h.reinitializations;
    }
    if (h.reinitialize_failures != reinitialize_failures_) {
      spdlog::warn(
          "re-initialising the PKCS#11 module failed ({} so far; the last: {}): see "
          "docs/operations.md, \"SoftHSM's memory\"",
          h.reinitialize_failures, last_reinit_error_);
      reinitialize_failures_ = h.reinitialize_failures;
    }
  }

  std::uint64_t reinitializations_ = 0;  // as last logged (ticker thread only)
  std::uint64_t reinitialize_failures_ = 0;
  std::string last_reinit_error_;  // (ticker thread only)
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

// Bounds shutdown when an HSM call does not return. PKCS#11 cannot cancel a call, and forbids
// C_Finalize while another thread is inside the module, so the only way out past a stuck call is
// to leave the process without finishing: armed at the signal, it ends the process with status 3
// if the orderly shutdown (drain, final audit checkpoint, closing the sessions, C_Finalize) has not
// finished by the deadline. Every answered request's audit record is already durable
// (docs/audit.md), so what is lost is the final checkpoint's signature, which the next start's
// checkpoint supplies.
class ShutdownDeadline {
 public:
  ShutdownDeadline() = default;
  ShutdownDeadline(const ShutdownDeadline&) = delete;
  ShutdownDeadline& operator=(const ShutdownDeadline&) = delete;
  ~ShutdownDeadline() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  void arm(std::chrono::milliseconds limit) {
    thread_ = std::thread([this, limit] {
      std::unique_lock lock(mu_);
      if (cv_.wait_for(lock, limit, [this] { return done_; })) return;
      spdlog::error(
          "shutdown did not finish within {} ms: an HSM call has not returned; exiting without the "
          "final audit checkpoint and without closing the HSM sessions",
          limit.count());
      spdlog::default_logger()->flush();
      std::_Exit(3);
    });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

// audit.mode = "off" (benchmark builds only): every event is accepted and dropped.
class DroppingSink final : public audit::AuditSink {
 public:
  Status record(audit::AuditEvent) override { return ok_status(); }
  Status record_all(std::vector<audit::AuditEvent>) override { return ok_status(); }
  void submit(std::vector<audit::AuditEvent>, std::function<void(Status)> on_durable) override {
    on_durable(ok_status());
  }
};

// The audit log's counters and state in /metrics (docs/operations.md).
void add_audit_metrics(api::Metrics& metrics, const audit::AuditLog& log) {
  auto stat = [&log](auto member) {
    return [&log, member] { return static_cast<double>(log.stats().*member); };
  };
  metrics.add_counter("kekd_audit_records_total", "Audit records committed since start.",
                      stat(&audit::AuditStats::records));
  metrics.add_counter("kekd_audit_transactions_total",
                      "Store transactions (fsyncs) that committed them: group commit.",
                      stat(&audit::AuditStats::transactions));
  metrics.add_counter("kekd_audit_commit_waits_total",
                      "Times the audit writer waited for a fuller batch (audit.commit_delay_us).",
                      stat(&audit::AuditStats::commit_waits));
  metrics.add_counter("kekd_audit_commit_wait_timeouts_total",
                      "Of those waits, the ones the delay ended before the batch filled.",
                      stat(&audit::AuditStats::commit_wait_timeouts));
  metrics.add_counter("kekd_audit_failed_records_total",
                      "Audit records the store refused; their requests were answered 503.",
                      stat(&audit::AuditStats::failed_records));
  metrics.add_counter("kekd_audit_checkpoints_total", "Signed audit checkpoints since start.",
                      stat(&audit::AuditStats::checkpoints));
  metrics.add_counter("kekd_audit_failed_checkpoints_total",
                      "Checkpoint attempts that failed (HSM or store); retried.",
                      stat(&audit::AuditStats::failed_checkpoints));
  metrics.add_gauge("kekd_audit_last_seq", "The sequence number of the last audit record.",
                    stat(&audit::AuditStats::last_seq));
  metrics.add_gauge("kekd_audit_unsigned_records",
                    "Audit records not yet covered by a signed checkpoint.", [&log] {
                      audit::AuditStats s = log.stats();
                      return static_cast<double>(s.last_seq - s.last_checkpoint_seq);
                    });
}

// Descriptors kept for what is not a client connection: the listener, the PKCS#11 module's files
// and sockets, the store and its WAL, the log.
constexpr rlim_t kReservedDescriptors = 128;

// Every connection is a descriptor. Raises the soft RLIMIT_NOFILE to the hard limit (as Go's
// runtime does; the default soft limit of 1024 is below the default max_connections plus the
// reserve), and if even the hard limit is too low, serves fewer connections than configured, with a
// warning: at max_connections idle connections are reclaimed for new ones, whereas out of
// descriptors every new client would wait in the backlog.
std::size_t connections_within_descriptor_limit(std::size_t max_connections) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return max_connections;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  if (limit.rlim_cur == RLIM_INFINITY || limit.rlim_cur >= max_connections + kReservedDescriptors) {
    return max_connections;
  }
  const std::size_t fits = limit.rlim_cur > 2 * kReservedDescriptors
                               ? limit.rlim_cur - kReservedDescriptors
                               : limit.rlim_cur / 2;
  spdlog::warn(
      "server.max_connections = {} does not fit the open-file limit ({}, with {} kept for the HSM "
      "and the store): serving at most {} connections; raise the limit (ulimit -n, LimitNOFILE=)",
      max_connections, limit.rlim_cur, kReservedDescriptors, fits);
  return fits;
}

api::ServerOptions server_options(const Config& config) {
  api::ServerOptions o;
  o.host = config.server.host;
  o.port = config.server.port;
  o.io_threads = io_threads_for(config.server.io_threads, std::thread::hardware_concurrency());
  o.workers = config.server.workers != 0 ? config.server.workers : config.hsm.sessions;
  o.worker_cpus = config.server.worker_cpus;
  o.answers_at_once = &api::Api::answers_at_once;
  o.max_connections = connections_within_descriptor_limit(config.server.max_connections);
  o.header_limit = config.server.header_limit;
  o.body_limit = config.server.body_limit;
  o.read_timeout = std::chrono::milliseconds(config.server.read_timeout);
  o.idle_timeout = std::chrono::milliseconds(config.server.idle_timeout);
  o.tls_cert = config.server.tls_cert;
  o.tls_key = config.server.tls_key;
  o.client_ca = config.server.client_ca;
  // Each worker calls the HSM with a session of its own: the wait for a worker is the wait for a
  // session, bounded like SessionPool::acquire.
  o.queue_timeout = std::chrono::milliseconds(config.hsm.acquire_timeout);
  return o;
}

}  // namespace

Status run_serve(const std::string& config_path) {
  // No core dumps and no ptrace by other users: main() has called protect_process_memory().
  KEKD_ASSIGN_OR_RETURN(Config config, load_config(config_path));
  spdlog::set_level(spdlog::level::from_str(config.log_level));
  // Before anything opens: a CPU this machine (or this cgroup) lacks is a mistake in kekd.toml.
  KEKD_RETURN_IF_ERROR(check_cpus_allowed(config.server.worker_cpus, "server.worker_cpus"));

  // Block the stop signals before any thread starts, so that every thread inherits the mask and
  // only sigwait below receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  // Declared before the deployment, so that its deadline also covers closing the HSM sessions
  // and C_Finalize, which happen when `d` is destroyed.
  ShutdownDeadline shutdown_deadline;
  Deployment d;
  KEKD_ASSIGN_OR_RETURN(d.hsm, open_hsm(config));
  KEKD_ASSIGN_OR_RETURN(std::vector<std::string> internal, d.hsm->find_keks(kInternalPrefix));
  if (internal.empty()) {
    return Error(Code::kFailedPrecondition,
                 "token '" + config.hsm.token_label + "' is not initialised: run kekd init first");
  }
  api::Metrics metrics;
  MeteredHsm metered(*d.hsm, metrics);
  hsm::Pkcs11Hsm& raw_hsm = *d.hsm;  // for session health; requests go through `metered`
  KEKD_RETURN_IF_ERROR(open_services(config, metered, d));

  // The audit log opens before anything can happen that it must record: the reconciliation
  // below may finish ceremonies.
  std::unique_ptr<audit::AuditLog> audit_log;
  DroppingSink dropping;
  audit::AuditSink* audit_sink = &dropping;
  if (config.audit.mode != AuditMode::kOff) {
    audit::AuditOptions audit_options;
    audit_options.durable = config.audit.mode == AuditMode::kDurable;
    audit_options.commit_delay = std::chrono::microseconds(config.audit.commit_delay_us);
    KEKD_ASSIGN_OR_RETURN(audit_log,
                          audit::AuditLog::open(*d.store, metered, std::string(kSigningKeyLabel),
                                                std::move(audit_options)));
    audit_sink = audit_log.get();
    add_audit_metrics(metrics, *audit_log);
    if (config.audit.mode == AuditMode::kAsync) {
      spdlog::warn(
          "audit.mode = async: requests are answered before their audit records are "
          "durable; a crash can lose the last records");
    }
  } else {
    spdlog::warn("audit.mode = off (benchmark build): nothing is audited");
  }
  d.ceremonies->set_audit_sink(audit_sink);

  // Finish ceremonies that a crash interrupted mid-execution before serving anything.
  KEKD_RETURN_IF_ERROR(d.ceremonies->reconcile());

  metrics.add_gauge("kekd_open_ceremonies", "Ceremonies waiting for approvals.", [&] {
    Result<std::size_t> n = d.ceremonies->open_count();
    return n.ok() ? static_cast<double>(*n) : -1.0;  // -1: the store failed
  });
  metrics.add_gauge("kekd_hsm_sessions_healthy",
                    "1 while every HSM session is usable and no HSM call is stalled.",
                    [&] { return raw_hsm.healthy() ? 1.0 : 0.0; });
  auto session_gauge = [&](const char* name, const char* help, auto read) {
    metrics.add_gauge(name, help, [&raw_hsm, read] { return read(raw_hsm.health()); });
  };
  session_gauge("kekd_hsm_sessions", "HSM sessions in the pool (hsm.sessions).",
                [](const hsm::SessionHealth& h) { return static_cast<double>(h.size); });
  session_gauge("kekd_hsm_sessions_in_use", "HSM sessions leased to an operation now.",
                [](const hsm::SessionHealth& h) { return static_cast<double>(h.in_use); });
  session_gauge("kekd_hsm_sessions_broken", "HSM sessions lost or failed, not yet reopened.",
                [](const hsm::SessionHealth& h) { return static_cast<double>(h.broken); });
  session_gauge("kekd_hsm_sessions_stalled",
                "HSM sessions in a call running longer than hsm.stall_threshold.",
                [](const hsm::SessionHealth& h) { return static_cast<double>(h.stalled); });
  session_gauge("kekd_hsm_longest_call_seconds",
                "How long the oldest HSM call now running has been running (0: none).",
                [](const hsm::SessionHealth& h) { return h.longest_lease.count() / 1000.0; });
  metrics.add_counter(
      "kekd_hsm_acquire_timeouts_total",
      "Operations refused (503) because no HSM session became free within hsm.acquire_timeout.",
      [&raw_hsm] { return static_cast<double>(raw_hsm.health().acquire_timeouts); });
  metrics.add_counter(
      "kekd_hsm_session_leases_total",
      "HSM sessions taken from the pool: one per HSM call (a data key makes two), or one per batch "
      "while no one waits.",
      [&raw_hsm] { return static_cast<double>(raw_hsm.health().leases); });
  metrics.add_counter("kekd_hsm_session_waits_total",
                      "Times an operation found no HSM session free and had to wait for one.",
                      [&raw_hsm] { return static_cast<double>(raw_hsm.health().lease_waits); });
  metrics.add_counter(
      "kekd_hsm_reinitializations_total",
      "Times the PKCS#11 module was re-initialised to free what it keeps of transient objects "
      "(hsm.reinitialize_after).",
      [&raw_hsm] { return static_cast<double>(raw_hsm.health().reinitializations); });
  metrics.add_counter(
      "kekd_hsm_reinitialize_failures_total",
      "Re-initialisations of the PKCS#11 module that failed: a call running too long or sessions "
      "not given back in time (nothing changed), C_Finalize refused, or the module, the token or "
      "the sessions not set up again (retried once a second).",
      [&raw_hsm] { return static_cast<double>(raw_hsm.health().reinitialize_failures); });

  api::ApiServices services;
  services.keyring = d.keyring.get();
  services.ceremonies = d.ceremonies.get();
  services.hsm = &metered;
  services.credentials = d.credentials.get();
  services.metrics = &metrics;
  services.signing_key_label = std::string(kSigningKeyLabel);
  services.audit = audit_sink;
  services.audit_store = d.store.get();
  services.kms = {config.kms.region, config.kms.account};
  services.backup_store = [&d](const std::string& path) { return d.store->backup_to(path); };
  services.readiness = [&raw_hsm] {
    api::Readiness r;
    hsm::SessionHealth h = raw_hsm.health();
    if (h.broken > 0) {
      r.ready = false;
      r.reasons.push_back("HSM sessions are being re-established");
    }
    if (h.stalled > 0) {
      r.ready = false;
      r.reasons.push_back(std::to_string(h.stalled) + " HSM call(s) running for more than " +
                          std::to_string(h.stall_threshold.count()) +
                          " ms (hsm.stall_threshold), the oldest for " +
                          std::to_string(h.longest_lease.count()) + " ms");
    }
    return r;
  };
  api::Api api(std::move(services));

  api::ServerOptions options = server_options(config);
  const std::size_t io_threads = options.io_threads;
  const std::size_t workers = options.workers;
  options.on_queue_timeout = [&api, wait = options.queue_timeout](const api::HttpRequest& request) {
    return api.refuse(request,
                      Error(Code::kUnavailable, "no HSM session became free within " +
                                                    std::to_string(wait.count()) +
                                                    " ms: HSM calls are slow or not returning; "
                                                    "retry later"),
                      wait);
  };
  KEKD_ASSIGN_OR_RETURN(
      std::unique_ptr<api::HttpServer> server,
      api::HttpServer::start(
          std::move(options), [&api](const api::HttpRequest& request, api::Responder respond) {
            api.handle(request, [respond = std::move(respond), id = request.request_id,
                                 method = request.method](api::HttpResponse response) {
              spdlog::debug("request id={} method={} route={} status={}", id, method,
                            response.route, response.status);
              respond(std::move(response));
            });
          }));
  // The audit writer holds responders until their records are durable, so the audit log must be
  // closed before the server is destroyed. The explicit close below does that on the way out; this
  // does it if anything throws first (the unique_ptrs would destroy the server before the log).
  struct CloseAuditLogFirst {
    audit::AuditLog* log;
    ~CloseAuditLogFirst() {
      if (log != nullptr) (void)log->close();
    }
  } close_audit_log_first{audit_log.get()};
  metrics.add_gauge("kekd_open_connections", "Open client connections.",
                    [&] { return static_cast<double>(server->open_connections()); });
  metrics.add_counter("kekd_http_queue_timeouts_total",
                      "Requests answered 503 because no worker (HSM session) became free within "
                      "hsm.acquire_timeout; they never ran.",
                      [&] { return static_cast<double>(server->queue_timeouts()); });
  metrics.add_counter("kekd_connections_reclaimed_total",
                      "Idle connections closed to admit a new one at server.max_connections.",
                      [&] { return static_cast<double>(server->connection_counts().reclaimed); });
  metrics.add_counter("kekd_connections_refused_total",
                      "New connections closed at once: at server.max_connections with none idle.",
                      [&] { return static_cast<double>(server->connection_counts().refused); });
  metrics.add_counter(
      "kekd_accept_failures_total",
      "Failed accepts, e.g. out of file descriptors; accepting pauses 100 ms after each.",
      [&] { return static_cast<double>(server->connection_counts().accept_failures); });
  auto ticker = std::make_unique<Ticker>(*d.ceremonies, raw_hsm);

  spdlog::info(
      "kekd serving on {}://{}:{} (token '{}', store {}; {} I/O threads, {} workers on CPUs {}; "
      "HSM module re-initialised every {} transient objects, 0: never)",
      config.server.tls_cert.empty() ? "http" : "https", config.server.host, server->port(),
      config.hsm.token_label, config.store_path, io_threads, workers,
      config.server.worker_cpus.empty() ? std::string("any")
                                        : cpu_list_text(config.server.worker_cpus),
      raw_hsm.health().reinitialize_after);

  int signal = 0;
  sigwait(&stop_signals, &signal);
  spdlog::info("signal {} received: draining in-flight requests", signal);
  // The drain bounds the requests; HSM calls get hsm.stall_threshold more to return (the final
  // checkpoint, closing the sessions), plus a second for everything else. Past that, a call is
  // stuck and waiting longer would wait forever.
  shutdown_deadline.arm(
      std::chrono::milliseconds(config.server.drain_timeout + config.hsm.stall_threshold + 1'000));
  server->stop(std::chrono::milliseconds(config.server.drain_timeout));
  ticker.reset();
  // After the last request and tick, before the token session closes: the final checkpoint
  // covers everything recorded.
  if (audit_log) {
    Status closed = audit_log->close();
    if (!closed.ok()) {
      spdlog::error("audit: the final checkpoint failed: {}", closed.error().to_string());
    }
  }
  // Only now, with no audit callback left to answer a request, may the connections go.
  server.reset();
  spdlog::info("stopped");
  return ok_status();
}

}  // namespace kekd::daemon
