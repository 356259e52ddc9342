#include <signal.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <thread>

#include "kekd/api/api.h"
#include "kekd/api/server.h"
#include "kekd/audit/audit_log.h"
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
            // Lost sessions come back by themselves once the token does, traffic or not.
            if (!hsm.healthy()) {
              Status healed = hsm.heal();
              if (!healed.ok()) spdlog::debug("HSM sessions: {}", healed.error().to_string());
            }
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
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
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

api::ServerOptions server_options(const Config& config) {
  api::ServerOptions o;
  o.host = config.server.host;
  o.port = config.server.port;
  o.io_threads = config.server.io_threads;
  o.workers = config.server.workers != 0 ? config.server.workers : config.hsm.sessions;
  o.answers_at_once = &api::Api::answers_at_once;
  o.max_connections = config.server.max_connections;
  o.header_limit = config.server.header_limit;
  o.body_limit = config.server.body_limit;
  o.read_timeout = std::chrono::milliseconds(config.server.read_timeout);
  o.idle_timeout = std::chrono::milliseconds(config.server.idle_timeout);
  o.tls_cert = config.server.tls_cert;
  o.tls_key = config.server.tls_key;
  o.client_ca = config.server.client_ca;
  return o;
}

}  // namespace

Status run_serve(const std::string& config_path) {
  // No core dumps and no ptrace by other users: main() has called protect_process_memory().
  KEKD_ASSIGN_OR_RETURN(Config config, load_config(config_path));
  spdlog::set_level(spdlog::level::from_str(config.log_level));

  // Block the stop signals before any thread starts, so that every thread inherits the mask and
  // only sigwait below receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

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
  metrics.add_gauge("kekd_hsm_sessions_healthy", "1 while every HSM session is usable.",
                    [&] { return raw_hsm.healthy() ? 1.0 : 0.0; });

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
    if (!raw_hsm.healthy()) {
      r.ready = false;
      r.reasons.push_back("HSM sessions are being re-established");
    }
    return r;
  };
  api::Api api(std::move(services));

  KEKD_ASSIGN_OR_RETURN(
      std::unique_ptr<api::HttpServer> server,
      api::HttpServer::start(
          server_options(config), [&api](const api::HttpRequest& request, api::Responder respond) {
            api.handle(request, [respond = std::move(respond), id = request.request_id,
                                 method = request.method](api::HttpResponse response) {
              spdlog::debug("request id={} method={} route={} status={}", id, method,
                            response.route, response.status);
              respond(std::move(response));
            });
          }));
  metrics.add_gauge("kekd_open_connections", "Open client connections.",
                    [&] { return static_cast<double>(server->open_connections()); });
  auto ticker = std::make_unique<Ticker>(*d.ceremonies, raw_hsm);

  spdlog::info("kekd serving on {}://{}:{} (token '{}', store {})",
               config.server.tls_cert.empty() ? "http" : "https", config.server.host,
               server->port(), config.hsm.token_label, config.store_path);

  int signal = 0;
  sigwait(&stop_signals, &signal);
  spdlog::info("signal {} received: draining in-flight requests", signal);
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
  spdlog::info("stopped");
  return ok_status();
}

}  // namespace kekd::daemon
