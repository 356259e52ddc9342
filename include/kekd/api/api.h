// The request logic of kekd's HTTP API (DESIGN §7): routing, authentication, authorisation,
// decoding, and the JSON answers. A plain function from HttpRequest to HttpResponse, so it is
// tested without sockets; the server (server.h) only moves bytes.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kekd/api/credentials.h"
#include "kekd/api/http_message.h"
#include "kekd/api/metrics.h"
#include "kekd/audit/sink.h"
#include "kekd/hsm/hsm.h"
#include "kekd/keys/keyring.h"
#include "kekd/store/audit_store.h"

namespace kekd::quorum {
class CeremonyService;
}

namespace kekd::api {

// Readiness (DESIGN §11): the token is logged in and the store is open.
struct Readiness {
  bool ready = true;
  std::vector<std::string> reasons;
};

// Who the AWS KMS-compatible API says it is (docs/aws-kms.md): the region its clients sign
// requests for, and the account its ARNs name. An ARN of another region or account names no key.
struct KmsIdentity {
  std::string region = "us-east-1";
  std::string account = "000000000000";
};

struct ApiServices {
  keys::Keyring* keyring = nullptr;
  quorum::CeremonyService* ceremonies = nullptr;
  hsm::Hsm* hsm = nullptr;
  Credentials* credentials = nullptr;
  Metrics* metrics = nullptr;
  std::function<Readiness()> readiness;
  std::string signing_key_label;  // kekd's audit/transcript signing key in the token
  // Every key operation, client change, ceremony step and refused credential is recorded here
  // before it is answered (DESIGN §9); a request whose record fails is answered 503.
  audit::AuditSink* audit = nullptr;
  store::AuditStore* audit_store = nullptr;  // what GET /v1/audit reads
  // Writes a consistent copy of the store to a new file at the path (GET /v1/backup).
  std::function<Status(const std::string& path)> backup_store;
  KmsIdentity kms;
};

class Api {
 public:
  explicit Api(ApiServices services);
  ~Api();

  // Answers the request through `done`, once the request's audit records are durable: on this
  // thread when there are none, else on the audit log's thread (ApiServices::audit).
  void handle(const HttpRequest& request, std::function<void(HttpResponse)> done);

  // True for the requests answered without the HSM, the store or the audit log: GET /v1/health
  // and /v1/ready (ServerOptions::answers_at_once).
  static bool answers_at_once(const HttpRequest& request);

  // The answer to a request that is refused without being run (ServerOptions::on_queue_timeout):
  // the error in the request's own face (native or KMS), counted in the request metrics. Not
  // audited: no credential was checked and nothing happened. waited: since it was parsed.
  HttpResponse refuse(const HttpRequest& request, const Error& error,
                      std::chrono::duration<double> waited);

  // The same, waiting for the answer (tests, tools).
  HttpResponse handle(const HttpRequest& request);

  struct Context;

 private:
  struct Routes;
  HttpResponse handle_native(const HttpRequest& request, std::string_view path, Context& context);
  ApiServices services_;
  std::unique_ptr<Routes> routes_;
};

}  // namespace kekd::api
