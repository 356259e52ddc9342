// Metrics: made-up request methods share one series, so a client cannot grow the metrics.
#include <doctest/doctest.h>

#include "kekd/api/metrics.h"

using kekd::api::Metrics;

TEST_CASE("MetricsFoldUnknownMethodsIntoOther") {
  Metrics metrics;
  metrics.observe_request("/v1/health", "GET", 200, 0.001);
  for (int i = 0; i < 100; ++i) {
    metrics.observe_request("(none)", "X" + std::to_string(i), 405, 0.001);
  }
  std::string text = metrics.render();
  CHECK(text.find("method=\"GET\"") != std::string::npos);
  CHECK(text.find("route=\"(none)\",method=\"other\",status=\"405\"} 100") != std::string::npos);
  CHECK(text.find("X42") == std::string::npos);
}

TEST_CASE("MetricsCountKeyOperationsByOutcomeAndAuthFailures") {
  Metrics metrics;
  CHECK(metrics.render().find("kekd_auth_failures_total{reason=\"unauthenticated\"} 0") !=
        std::string::npos);
  metrics.observe_key_operation("unwrap", "ok");
  metrics.observe_key_operation("unwrap", "invalid_ciphertext");
  metrics.observe_key_operation("unwrap", "invalid_ciphertext");
  metrics.observe_auth_failure("permission_denied");
  std::string text = metrics.render();
  CHECK(text.find(
            "kekd_key_operations_total{operation=\"unwrap\",outcome=\"invalid_ciphertext\"} 2") !=
        std::string::npos);
  CHECK(text.find("kekd_key_operations_total{operation=\"unwrap\",outcome=\"ok\"} 1") !=
        std::string::npos);
  CHECK(text.find("kekd_auth_failures_total{reason=\"permission_denied\"} 1") != std::string::npos);
}
