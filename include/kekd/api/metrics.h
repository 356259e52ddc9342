// Prometheus metrics: requests by route, method and status; a latency histogram per route; HSM
// operations and errors; gauges supplied by the daemon (open ceremonies, open connections).
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace kekd::api {

class Metrics {
 public:
  void observe_request(const std::string& route, const std::string& method, int status,
                       double seconds);
  void observe_hsm(const std::string& operation, bool ok);
  // One key operation (each batch item counts): "ok" or the error code's name. Failed unwraps
  // (invalid_ciphertext: tampered, foreign or wrong-context ciphertexts) are what an alert on
  // decryption failures watches (docs/operations.md).
  void observe_key_operation(std::string_view operation, std::string_view outcome);
  // A request refused for its credential (unauthenticated) or for a missing grant or admin
  // right (permission_denied).
  void observe_auth_failure(std::string_view reason);
  void add_gauge(std::string name, std::string help, std::function<double()> read);
  // A counter kept elsewhere (the audit log's), read when /metrics is rendered.
  void add_counter(std::string name, std::string help, std::function<double()> read);

  std::string render() const;

 private:
  static constexpr std::array<double, 12> kBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                      0.05,   0.1,   0.25,   0.5,   1.0,  2.5};
  struct Histogram {
    std::array<std::uint64_t, kBuckets.size()> counts{};
    std::uint64_t count = 0;
    double sum = 0;
  };
  struct Gauge {
    std::string name, help;
    std::function<double()> read;
    const char* type;  // "gauge" or "counter"
  };

  mutable std::mutex mu_;
  std::map<std::tuple<std::string, std::string, int>, std::uint64_t> requests_;
  std::map<std::string, Histogram> latency_;
  std::map<std::pair<std::string, bool>, std::uint64_t> hsm_;
  std::map<std::pair<std::string, std::string>, std::uint64_t, std::less<>> key_operations_;
  std::map<std::string, std::uint64_t, std::less<>> auth_failures_;
  std::vector<Gauge> gauges_;
};

}  // namespace kekd::api
