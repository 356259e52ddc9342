// The native API's JSON request decoding (src/api/json_body.h and the item decoders of
// src/api/key_routes.cc), fuzzed through the real entry point: Api::handle, with a keyring over
// the in-memory HSM of tests/support, a real SQLite store in a temporary directory, a client
// holding every key grant on the key "fuzz", and an audit sink that counts what it is given.
//
// Input: the first byte picks the operation (datakey, wrap, unwrap, rewrap); the rest is the body
// of POST /v1/keys/fuzz/<operation>. The text @CT@ in the body is replaced by the base64 of a real
// ciphertext of kKnownPlaintext under version 1 of "fuzz" with no context, and @CTX@ by one made
// with the context {"tenant": "acme"}: the token's keys are random per process, so a seed could
// not carry a ciphertext that opens, and without one unwrap and rewrap would never succeed.
//
// Properties:
//  - the answer is one JSON object (a final LF after a result); never a 5xx (bad input is the
//  client's error);
//  - a refusal is {"error": {code, message, request_id}} with this request's id;
//  - exactly one audit event per item (one for a request refused as a whole);
//  - a batch answers as many items as it was given, each a result or an error;
//  - every ciphertext the API returns (wrap, datakey, rewrap) unwraps through the API, with the
//    item's context, to the plaintext it was made from; unwrapping @CT@ gives kKnownPlaintext.
#include <botan/base64.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "api/json_body.h"
#include "fuzz_check.h"
#include "kekd/api/api.h"
#include "kekd/api/credentials.h"
#include "kekd/api/metrics.h"
#include "kekd/audit/sink.h"
#include "kekd/keys/keyring.h"
#include "kekd/store/sqlite_store.h"
#include "support/memory_hsm.h"
#include "support/temp_dir.h"
#include "support/test_mandate.h"

using namespace kekd;
using api::Json;

namespace {

constexpr std::string_view kKnownPlaintext = "sixteen byte key";
constexpr UnixMillis kNow = 1'795'000'000'000;
constexpr const char* kRequestId = "fuzz-request";

// Accepts every event at once and counts them: the API's "one record per item" is a property.
class CountingSink final : public audit::AuditSink {
 public:
  Status record(audit::AuditEvent) override {
    ++count;
    return ok_status();
  }
  Status record_all(std::vector<audit::AuditEvent> events) override {
    count += events.size();
    return ok_status();
  }
  void submit(std::vector<audit::AuditEvent> events,
              std::function<void(Status)> on_durable) override {
    count += events.size();
    on_durable(ok_status());
  }
  std::size_t count = 0;
};

template <typename T>
T must(Result<T> r) {
  if (!r.ok()) {
    std::fprintf(stderr, "fuzz setup failed: %s\n", r.error().to_string().c_str());
    std::abort();
  }
  return std::move(*r);
}

struct World {
  testing::TempDir dir;
  testing::MemoryHsm hsm;
  std::unique_ptr<store::SqliteStore> store;
  std::unique_ptr<keys::Keyring> keyring;
  std::unique_ptr<api::Credentials> credentials;
  api::Metrics metrics;
  CountingSink sink;
  std::unique_ptr<api::Api> api;
  std::string authorization;
  std::string ciphertext;          // base64, of kKnownPlaintext, no context
  std::string context_ciphertext;  // base64, of kKnownPlaintext, context tenant=acme

  World() {
    store = must(store::SqliteStore::open(dir.file("kekd.db")));
    keyring = must(keys::Keyring::open(hsm, *store, [] { return kNow; }));
    must(keyring->apply(testing::MandateForTests::create_key("fuzz")));
    const SecretBytes known(kKnownPlaintext.begin(), kKnownPlaintext.end());
    ciphertext = api::encode_base64(must(keyring->wrap("fuzz", known, {})).ciphertext);
    context_ciphertext =
        api::encode_base64(must(keyring->wrap("fuzz", known, {{"tenant", "acme"}})).ciphertext);
    // Version 2 is the primary from here on: rewrap moves @CT@ from version 1 to 2.
    must(keyring->apply(testing::MandateForTests::rotate_key("fuzz")));
    if (!api::Credentials::create_token_key(hsm).ok()) std::abort();
    credentials = std::make_unique<api::Credentials>(hsm, *store);
    api::NewClient client = must(credentials->create(
        false, R"([{"key": "fuzz", "operations": ["datakey", "wrap", "unwrap", "rewrap"]}])",
        kNow));
    authorization = "Bearer " + client.token();
    api::ApiServices services;
    services.keyring = keyring.get();
    services.hsm = &hsm;
    services.credentials = credentials.get();
    services.metrics = &metrics;
    services.audit = &sink;
    api = std::make_unique<api::Api>(std::move(services));
  }

  api::HttpResponse post(std::string_view operation, std::string body) {
    api::HttpRequest request;
    request.method = "POST";
    request.target = "/v1/keys/fuzz/" + std::string(operation);
    request.headers["authorization"] = authorization;
    request.headers["content-type"] = "application/json";
    request.body = std::move(body);
    request.request_id = kRequestId;
    return api->handle(request);
  }
};

World& world() {
  // Never destroyed: no exit-time destructor runs against a store still in use. Its temporary
  // directory is under TMPDIR, which scripts/fuzz.sh points at the run's scratch directory.
  static World* w = new World();
  return *w;
}

void replace_all(std::string& text, std::string_view from, const std::string& to) {
  for (std::size_t at = text.find(from); at != std::string::npos;
       at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
}

Json parse_answer(const api::HttpResponse& response) {
  FUZZ_CHECK(response.content_type == "application/json");
  // Answers end with a LF (json_body.h dump()); errors (errors.cc) are written without one.
  if (response.status == 200) FUZZ_CHECK(response.body.ends_with('\n'));
  Json answer = Json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  FUZZ_CHECK(answer.is_object());
  return answer;
}

std::string decoded(const Json& base64) {
  FUZZ_CHECK(base64.is_string());
  Botan::secure_vector<std::uint8_t> bytes = Botan::base64_decode(base64.get<std::string>());
  return std::string(bytes.begin(), bytes.end());
}

// Unwraps a ciphertext the API returned, with the context its item gave, through the API.
std::string unwrap_through_api(const Json& ciphertext, const Json& item) {
  Json body = {{"ciphertext", ciphertext}};
  if (item.contains("context")) body["context"] = item["context"];
  const std::size_t before = world().sink.count;
  api::HttpResponse response = world().post("unwrap", body.dump());
  FUZZ_CHECK(response.status == 200);
  FUZZ_CHECK(world().sink.count == before + 1);
  Json answer = parse_answer(response);
  FUZZ_CHECK(answer["key"] == "fuzz");
  return decoded(answer["plaintext"]);
}

// One item's result, given the request item it answers (already accepted as JSON by the API).
void check_result(std::string_view operation, const Json& item, const Json& result) {
  FUZZ_CHECK(result.is_object());
  if (result.contains("error")) {
    FUZZ_CHECK(result["error"]["code"].is_string() && result["error"]["message"].is_string());
    return;
  }
  FUZZ_CHECK(result["key"] == "fuzz");
  FUZZ_CHECK(result["version"] == 1 || result["version"] == 2);
  if (operation == "wrap") {
    FUZZ_CHECK(result["version"] == 2);
    FUZZ_CHECK(unwrap_through_api(result["ciphertext"], item) == decoded(item["plaintext"]));
  } else if (operation == "datakey") {
    const std::string key = unwrap_through_api(result["ciphertext"], item);
    // Absent and null both mean the default, as json_body.h reads them.
    const Json bytes = item.contains("bytes") ? item["bytes"] : Json();
    const Json plaintext = item.contains("plaintext") ? item["plaintext"] : Json();
    FUZZ_CHECK(key.size() == (bytes.is_null() ? 32u : bytes.get<std::size_t>()));
    if (plaintext.is_null() || plaintext.get<bool>()) {
      FUZZ_CHECK(decoded(result["plaintext"]) == key);
    } else {
      FUZZ_CHECK(!result.contains("plaintext"));
    }
  } else if (operation == "unwrap") {
    // Only the ciphertexts the harness made can open, and both hold kKnownPlaintext.
    FUZZ_CHECK(result["version"] == 1);
    FUZZ_CHECK(decoded(result["plaintext"]) == kKnownPlaintext);
  } else {
    FUZZ_CHECK(result["version"] == 2);
    FUZZ_CHECK(unwrap_through_api(result["ciphertext"], item) == kKnownPlaintext);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  static constexpr std::string_view kOperations[] = {"datakey", "wrap", "unwrap", "rewrap"};
  const std::string_view operation = kOperations[data[0] % 4];
  std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  // Longest first: "@CT@" is not a prefix of "@CTX@", but keep the order obvious.
  replace_all(body, "@CTX@", world().context_ciphertext);
  replace_all(body, "@CT@", world().ciphertext);

  World& w = world();
  w.sink.count = 0;
  api::HttpResponse response = w.post(operation, body);
  FUZZ_CHECK(response.status < 500);
  Json answer = parse_answer(response);
  if (response.status != 200) {
    FUZZ_CHECK(answer.size() == 1 && answer["error"].is_object());
    FUZZ_CHECK(answer["error"]["code"].is_string() && answer["error"]["message"].is_string());
    FUZZ_CHECK(answer["error"]["request_id"] == kRequestId);
    FUZZ_CHECK(w.sink.count == 1);
    return 0;
  }
  // Accepted, so the body is a JSON object the API understood; read it back independently.
  const Json request = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  FUZZ_CHECK(request.is_object());
  if (answer.contains("items")) {
    FUZZ_CHECK(answer.size() == 1 && answer["items"].is_array());
    FUZZ_CHECK(answer["items"].size() == request["items"].size());
    FUZZ_CHECK(w.sink.count == request["items"].size());
    for (std::size_t i = 0; i < request["items"].size(); ++i) {
      check_result(operation, request["items"][i], answer["items"][i]);
    }
    return 0;
  }
  FUZZ_CHECK(w.sink.count == 1);
  check_result(operation, request, answer);
  return 0;
}
