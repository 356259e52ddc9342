// The HTTP server and the request logic together, in one process and over real sockets: several
// client threads at once, each on its own keep-alive connection, while the I/O threads answer
// health and readiness, the worker pool runs key operations, the audit log's thread sends the
// answers once their records are durable, and the admin creates and deletes clients. The HSM is
// the in-memory fake. Run under ThreadSanitizer by scripts/sanitizers.sh (suite "concurrency").
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <thread>
#include <vector>

#include "kekd/api/api.h"
#include "kekd/api/http_client.h"
#include "kekd/api/server.h"
#include "kekd/audit/audit_log.h"
#include "support/keyring_harness.h"
#include "support/memory_hsm.h"

using namespace kekd;
using namespace kekd::testing;
using nlohmann::json;

namespace {

constexpr std::string_view kSigningLabel = "kekd-internal:audit";

std::unique_ptr<api::HttpClient> connect(std::uint16_t port) {
  api::Endpoint endpoint;
  endpoint.url = "http://127.0.0.1:" + std::to_string(port);
  auto client = api::HttpClient::create(std::move(endpoint));
  REQUIRE_MESSAGE(client.ok(), client.error().to_string());
  return std::move(client).value();
}

}  // namespace

TEST_CASE("ServerAnswersManyClientThreadsAtOnceAndAuditsEveryOperation" *
          doctest::test_suite("concurrency")) {
  MemoryHsm hsm;
  KeyringHarness h(hsm);
  h.create_key("payments");
  REQUIRE(hsm.generate_signing_key(kSigningLabel).ok());
  REQUIRE(api::Credentials::create_token_key(hsm).ok());
  api::Credentials credentials(hsm, h.store());
  auto admin = credentials.create(true, "[]", h.now);
  REQUIRE(admin.ok());
  auto app =
      credentials.create(false, R"([{"key":"payments","operations":["datakey","unwrap"]}])", h.now);
  REQUIRE(app.ok());

  auto audit = audit::AuditLog::open(h.store(), hsm, std::string(kSigningLabel));
  REQUIRE_MESSAGE(audit.ok(), audit.error().to_string());
  api::Metrics metrics;
  api::ApiServices services;
  services.keyring = &h.keyring();
  services.hsm = &hsm;
  services.credentials = &credentials;
  services.metrics = &metrics;
  services.signing_key_label = std::string(kSigningLabel);
  services.audit = audit->get();
  services.audit_store = &h.store();
  api::Api service(std::move(services));

  api::ServerOptions options;
  options.port = 0;
  options.io_threads = 2;
  options.workers = 4;
  options.answers_at_once = &api::Api::answers_at_once;
  auto server = api::HttpServer::start(
      options, [&service](const api::HttpRequest& request, api::Responder respond) {
        service.handle(request, std::move(respond));
      });
  REQUIRE_MESSAGE(server.ok(), server.error().to_string());
  const std::uint16_t port = (*server)->port();

  constexpr int kAppThreads = 4;
  constexpr int kRounds = 25;
  constexpr int kClientChanges = 10;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  const std::map<std::string, std::string> app_auth{{"authorization", "Bearer " + app->token()}};
  const std::map<std::string, std::string> admin_auth{
      {"authorization", "Bearer " + admin->token()}};

  // Applications: a data key, then its ciphertext unwrapped, on one keep-alive connection each.
  for (int t = 0; t < kAppThreads; ++t) {
    threads.emplace_back([&, t] {
      auto client = connect(port);
      const json context = {{"thread", std::to_string(t)}};
      for (int i = 0; i < kRounds; ++i) {
        auto made = client->request("POST", "/v1/keys/payments/datakey",
                                    json{{"bytes", 32}, {"context", context}}.dump(), app_auth);
        if (!made.ok() || made->status != 200) {
          failures++;
          continue;
        }
        json key = json::parse(made->body);
        auto opened = client->request(
            "POST", "/v1/keys/payments/unwrap",
            json{{"ciphertext", key["ciphertext"]}, {"context", context}}.dump(), app_auth);
        if (!opened.ok() || opened->status != 200 ||
            json::parse(opened->body)["plaintext"] != key["plaintext"]) {
          failures++;
        }
      }
    });
  }
  // Probes: answered on the I/O threads (health, readiness) and by the workers (metrics).
  threads.emplace_back([&] {
    auto client = connect(port);
    for (int i = 0; i < kRounds * 2; ++i) {
      for (const char* target : {"/v1/health", "/v1/ready", "/metrics"}) {
        auto r = client->request("GET", target, "", {});
        if (!r.ok() || r->status != 200) failures++;
      }
    }
  });
  // The admin: clients created, listed and deleted meanwhile (the credentials cache changes).
  threads.emplace_back([&] {
    auto client = connect(port);
    for (int i = 0; i < kClientChanges; ++i) {
      auto created = client->request("POST", "/v1/clients", "{}", admin_auth);
      if (!created.ok() || created->status != 201) {
        failures++;
        continue;
      }
      std::string token = json::parse(created->body)["token"];
      std::string id = token.substr(0, token.find('.'));
      const std::map<std::string, std::string> auth{{"authorization", "Bearer " + token}};
      auto listed = client->request("GET", "/v1/keys", "", auth);
      if (!listed.ok() || listed->status != 200) failures++;
      auto removed = client->request("DELETE", "/v1/clients/" + id, "", admin_auth);
      if (!removed.ok() || removed->status != 200) failures++;
      auto refused = client->request("GET", "/v1/keys", "", auth);
      if (!refused.ok() || refused->status != 401) failures++;
    }
  });
  for (std::thread& t : threads) t.join();

  (*server)->stop(std::chrono::seconds(5));
  REQUIRE((*audit)->close().ok());
  CHECK(failures == 0);
  audit::AuditStats stats = (*audit)->stats();
  // Every data key and unwrap, every client created and deleted, every refused credential.
  CHECK(stats.records >= kAppThreads * kRounds * 2 + kClientChanges * 3);
  CHECK(stats.failed_records == 0);
}
