#include "kekd/api/metrics.h"

#include <sstream>

namespace kekd::api {
namespace {

// A client chooses the method token; only the methods kekd serves get a series of their own, so
// that made-up methods cannot grow the metrics without bound.
std::string method_label(const std::string& method) {
  for (const char* known : {"GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"}) {
    if (method == known) return method;
  }
  return "other";
}

}  // namespace

void Metrics::observe_request(const std::string& route, const std::string& method, int status,
                              double seconds) {
  std::lock_guard lock(mu_);
  requests_[{route, method_label(method), status}]++;
  Histogram& h = latency_[route];
  for (std::size_t i = 0; i < kBuckets.size(); ++i) {
    if (seconds <= kBuckets[i]) h.counts[i]++;
  }
  h.count++;
  h.sum += seconds;
}

void Metrics::observe_hsm(const std::string& operation, bool ok) {
  std::lock_guard lock(mu_);
  hsm_[{operation, ok}]++;
}

void Metrics::observe_key_operation(std::string_view operation, std::string_view outcome) {
  std::lock_guard lock(mu_);
  key_operations_[{std::string(operation), std::string(outcome)}]++;
}

void Metrics::observe_auth_failure(std::string_view reason) {
  std::lock_guard lock(mu_);
  auth_failures_[std::string(reason)]++;
}

void Metrics::add_gauge(std::string name, std::string help, std::function<double()> read) {
  std::lock_guard lock(mu_);
  gauges_.push_back(Gauge{std::move(name), std::move(help), std::move(read), "gauge"});
}

void Metrics::add_counter(std::string name, std::string help, std::function<double()> read) {
  std::lock_guard lock(mu_);
  gauges_.push_back(Gauge{std::move(name), std::move(help), std::move(read), "counter"});
}

std::string Metrics::render() const {
  std::ostringstream out;
  std::lock_guard lock(mu_);
  out << "# HELP kekd_http_requests_total HTTP requests by route, method and status.\n"
      << "# TYPE kekd_http_requests_total counter\n";
  for (const auto& [key, n] : requests_) {
    const auto& [route, method, status] = key;
    out << "kekd_http_requests_total{route=\"" << route << "\",method=\"" << method
        << "\",status=\"" << status << "\"} " << n << "\n";
  }
  out << "# HELP kekd_http_request_duration_seconds Time from request parsed to response ready.\n"
      << "# TYPE kekd_http_request_duration_seconds histogram\n";
  for (const auto& [route, h] : latency_) {
    for (std::size_t i = 0; i < kBuckets.size(); ++i) {
      out << "kekd_http_request_duration_seconds_bucket{route=\"" << route << "\",le=\""
          << kBuckets[i] << "\"} " << h.counts[i] << "\n";
    }
    out << "kekd_http_request_duration_seconds_bucket{route=\"" << route << "\",le=\"+Inf\"} "
        << h.count << "\n"
        << "kekd_http_request_duration_seconds_sum{route=\"" << route << "\"} " << h.sum << "\n"
        << "kekd_http_request_duration_seconds_count{route=\"" << route << "\"} " << h.count
        << "\n";
  }
  out << "# HELP kekd_hsm_operations_total HSM operations by operation and outcome.\n"
      << "# TYPE kekd_hsm_operations_total counter\n";
  for (const auto& [key, n] : hsm_) {
    out << "kekd_hsm_operations_total{operation=\"" << key.first << "\",outcome=\""
        << (key.second ? "ok" : "error") << "\"} " << n << "\n";
  }
  out << "# HELP kekd_key_operations_total Key operations (each batch item counts) by operation "
         "and outcome (ok, or the error code).\n"
      << "# TYPE kekd_key_operations_total counter\n";
  for (const auto& [key, n] : key_operations_) {
    out << "kekd_key_operations_total{operation=\"" << key.first << "\",outcome=\"" << key.second
        << "\"} " << n << "\n";
  }
  out << "# HELP kekd_auth_failures_total Requests refused for bad credentials (unauthenticated) "
         "or a missing grant (permission_denied).\n"
      << "# TYPE kekd_auth_failures_total counter\n";
  for (const char* reason : {"unauthenticated", "permission_denied"}) {
    auto found = auth_failures_.find(std::string_view(reason));
    out << "kekd_auth_failures_total{reason=\"" << reason << "\"} "
        << (found == auth_failures_.end() ? 0 : found->second) << "\n";
  }
  for (const Gauge& g : gauges_) {
    out << "# HELP " << g.name << " " << g.help << "\n# TYPE " << g.name << " " << g.type << "\n"
        << g.name << " " << g.read() << "\n";
  }
  return out.str();
}

}  // namespace kekd::api
