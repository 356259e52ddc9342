#include "kekd/api/api.h"

#include <chrono>
#include <future>

#include "errors.h"
#include "kekd/common/time.h"
#include "kekd/quorum/operator.h"
#include "kms.h"
#include "routes.h"

namespace kekd::api {
namespace {

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> parts;
  std::size_t start = 1;
  while (start <= path.size()) {
    std::size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    parts.emplace_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return parts;
}

// Matches a path against a pattern; fills params with the {placeholder} segments.
bool matches(const std::vector<std::string>& pattern, const std::vector<std::string>& path,
             std::vector<std::string>& params) {
  if (pattern.size() != path.size()) return false;
  std::vector<std::string> found;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i].starts_with('{')) {
      if (path[i].empty()) return false;
      found.push_back(path[i]);
    } else if (pattern[i] != path[i]) {
      return false;
    }
  }
  params = std::move(found);
  return true;
}

// The AWS KMS-compatible API has one endpoint: every POST to "/" (X-Amz-Target picks the action).
bool is_kms_request(const HttpRequest& request, std::string_view path) {
  return path == "/" && request.method == "POST";
}

Json key_json(const keys::KeyInfo& info) {
  Json versions = Json::array();
  for (const store::KeyVersionRecord& v : info.record.versions) {
    Json version = {{"version", v.version},
                    {"state", std::string(store::state_name(v.state))},
                    {"created_at", format_rfc3339(v.created_at)},
                    {"ceremony_id", v.ceremony_id}};
    if (v.destroy_after) version["destroy_after"] = format_rfc3339(*v.destroy_after);
    versions.push_back(std::move(version));
  }
  Json key = {{"name", info.record.name},
              {"id", info.record.id},
              {"created_at", format_rfc3339(info.record.created_at)},
              {"versions", std::move(versions)}};
  key["primary_version"] = info.primary_version == 0 ? Json(nullptr) : Json(info.primary_version);
  return key;
}

void add_core_routes(std::vector<Route>& routes) {
  routes.push_back({"GET", "/v1/health", Access::kAnyone,
                    [](const ApiServices&, Api::Context&) -> Result<HttpResponse> {
                      return json_response({{"status", "ok"}});
                    }});
  routes.push_back({"GET", "/v1/ready", Access::kAnyone,
                    [](const ApiServices& s, Api::Context&) -> Result<HttpResponse> {
                      Readiness r = s.readiness ? s.readiness() : Readiness{};
                      return json_response({{"ready", r.ready}, {"reasons", r.reasons}},
                                           r.ready ? 200 : http_status(Code::kUnavailable));
                    }});
  routes.push_back({"GET", "/metrics", Access::kAnyone,
                    [](const ApiServices& s, Api::Context&) -> Result<HttpResponse> {
                      return text_response(s.metrics->render(),
                                           "text/plain; version=0.0.4; charset=utf-8");
                    }});
  // The admin sees every key; a client sees the keys it holds a describe grant for.
  routes.push_back({"GET", "/v1/keys", Access::kAuthenticated,
                    [](const ApiServices& s, Api::Context& c) -> Result<HttpResponse> {
                      Json keys = Json::array();
                      for (const keys::KeyInfo& info : s.keyring->list()) {
                        if (c.principal->admin ||
                            allows(c.principal->grants, info.record.name, Operation::kDescribe)) {
                          keys.push_back(key_json(info));
                        }
                      }
                      return json_response({{"keys", std::move(keys)}});
                    }});
  routes.push_back({"GET", "/v1/keys/{name}", Access::kAuthenticated,
                    [](const ApiServices& s, Api::Context& c) -> Result<HttpResponse> {
                      if (!c.principal->admin &&
                          !allows(c.principal->grants, c.params[0], Operation::kDescribe)) {
                        return Error(Code::kPermissionDenied,
                                     "this client has no describe grant for '" + c.params[0] + "'");
                      }
                      KEKD_ASSIGN_OR_RETURN(keys::KeyInfo info, s.keyring->describe(c.params[0]));
                      return json_response(key_json(info));
                    }});
  routes.push_back({"GET", "/v1/audit/public-key", Access::kAuthenticated,
                    [](const ApiServices& s, Api::Context&) -> Result<HttpResponse> {
                      KEKD_ASSIGN_OR_RETURN(Bytes spki,
                                            s.hsm->signing_public_key(s.signing_key_label));
                      return text_response(quorum::spki_pem(spki), "application/x-pem-file");
                    }});
}

}  // namespace

std::optional<std::string> Api::Context::query_param(std::string_view name) const {
  std::size_t start = 0;
  while (start <= query.size()) {
    std::size_t amp = query.find('&', start);
    if (amp == std::string::npos) amp = query.size();
    std::string_view pair = std::string_view(query).substr(start, amp - start);
    std::size_t eq = pair.find('=');
    if (pair.substr(0, eq) == name) {
      return std::string(eq == std::string_view::npos ? "" : pair.substr(eq + 1));
    }
    start = amp + 1;
  }
  return std::nullopt;
}

HttpResponse json_response(const Json& body, int status) {
  HttpResponse response;
  response.status = status;
  response.body = dump(body);
  return response;
}

HttpResponse text_response(std::string body, std::string content_type) {
  HttpResponse response;
  response.content_type = std::move(content_type);
  response.body = std::move(body);
  return response;
}

struct Api::Routes {
  struct Compiled {
    Route route;
    std::vector<std::string> segments;
  };
  std::vector<Compiled> table;
};

Api::Api(ApiServices services) : services_(std::move(services)), routes_(new Routes) {
  std::vector<Route> routes;
  add_core_routes(routes);
  add_ceremony_routes(routes);
  add_key_routes(routes);
  add_client_routes(routes);
  add_audit_routes(routes);
  add_backup_routes(routes);
  for (Route& route : routes) {
    std::vector<std::string> segments = split_path(route.pattern);
    routes_->table.push_back({std::move(route), std::move(segments)});
  }
}

Api::~Api() = default;

HttpResponse Api::handle_native(const HttpRequest& request, std::string_view path,
                                Context& context) {
  const Routes::Compiled* found = nullptr;
  std::string allowed;
  if (path.starts_with('/')) {
    std::vector<std::string> parts = split_path(path);
    for (const Routes::Compiled& r : routes_->table) {
      std::vector<std::string> params;
      if (!matches(r.segments, parts, params)) continue;
      if (r.route.method == request.method) {
        found = &r;
        context.params = std::move(params);
        break;
      }
      allowed += allowed.empty() ? r.route.method : ", " + r.route.method;
    }
  }

  Result<HttpResponse> result = [&]() -> Result<HttpResponse> {
    if (found == nullptr) {
      if (!allowed.empty()) {
        return Error(Code::kMethodNotAllowed,
                     request.method + " is not allowed here; use " + allowed);
      }
      return Error(Code::kNotFound, "no such endpoint: " + std::string(path));
    }
    if (found->route.access != Access::kAnyone) {
      KEKD_ASSIGN_OR_RETURN(Principal principal,
                            services_.credentials->authenticate(request.header("authorization")));
      if (found->route.access == Access::kAdmin && !principal.admin) {
        return Error(Code::kPermissionDenied, "this needs the admin credential");
      }
      context.principal = std::move(principal);
    }
    return found->route.handler(services_, context);
  }();

  if (!result.ok() && (result.error().code() == Code::kUnauthenticated ||
                       result.error().code() == Code::kPermissionDenied)) {
    services_.metrics->observe_auth_failure(code_name(result.error().code()));
    // A refusal the handler did not record itself (a bad credential, a client on an admin route,
    // a describe without its grant) is one "auth.failure" record. If even that cannot be
    // recorded, the answer is 503 like for every other request the log cannot account for.
    if (!context.audited) {
      audit::AuditEvent event = audit_event(context, "auth.failure");
      if (!context.principal)
        event.principal = Credentials::claimed_client_id(request.header("authorization"));
      event.subject =
          request.method + " " + (found != nullptr ? found->route.pattern : "unmatched");
      event.error = result.error().code();
      Status recorded = record_audit(services_, context, std::move(event));
      if (!recorded.ok()) result = recorded.error();
    }
  }
  HttpResponse response =
      result.ok() ? std::move(*result) : error_response(result.error(), request.request_id);
  if (!result.ok() && result.error().code() == Code::kMethodNotAllowed) {
    response.headers.emplace_back("Allow", allowed);
  }
  response.route = found != nullptr ? found->route.pattern : "unmatched";
  return response;
}

void Api::handle(const HttpRequest& request, std::function<void(HttpResponse)> done) {
  const auto started = std::chrono::steady_clock::now();
  std::string_view target = request.target;
  std::size_t q = target.find('?');
  std::string_view path = target.substr(0, q);
  Context context{request,
                  {},
                  q == std::string_view::npos ? "" : std::string(target.substr(q + 1)),
                  std::nullopt};

  HttpResponse response;
  // The AWS KMS-compatible API has one endpoint, its own authentication and its own errors.
  const bool kms = is_kms_request(request, path);
  if (kms) {
    response = kms::handle(services_, context);
  } else {
    response = handle_native(request, path, context);
  }
  auto finish = [metrics = services_.metrics, started, method = request.method,
                 done = std::move(done)](HttpResponse response) {
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    metrics->observe_request(response.route, method, response.status, seconds);
    done(std::move(response));
  };
  if (context.audit_events.empty()) {
    finish(std::move(response));
    return;
  }
  // The answer leaves only once its records are durable; no thread waits for that meanwhile.
  services_.audit->submit(std::move(context.audit_events),
                          [finish = std::move(finish), response = std::move(response),
                           request_id = request.request_id, kms](Status recorded) mutable {
                            if (recorded.ok()) {
                              finish(std::move(response));
                              return;
                            }
                            Error unavailable = audit_unavailable(recorded.error());
                            HttpResponse refused =
                                kms ? kms::error_response(unavailable, request_id)
                                    : error_response(unavailable, request_id);
                            refused.route = response.route;
                            finish(std::move(refused));
                          });
}

HttpResponse Api::refuse(const HttpRequest& request, const Error& error,
                         std::chrono::duration<double> waited) {
  std::string_view target = request.target;
  std::string_view path = target.substr(0, target.find('?'));
  const bool kms = is_kms_request(request, path);
  HttpResponse response = kms ? kms::error_response(error, request.request_id)
                              : error_response(error, request.request_id);
  response.route = "unmatched";
  if (kms) {
    response.route = "/";
  } else if (path.starts_with('/')) {
    std::vector<std::string> parts = split_path(path);
    for (const Routes::Compiled& r : routes_->table) {
      std::vector<std::string> params;
      if (r.route.method == request.method && matches(r.segments, parts, params)) {
        response.route = r.route.pattern;
        break;
      }
    }
  }
  services_.metrics->observe_request(response.route, request.method, response.status,
                                     waited.count());
  return response;
}

bool Api::answers_at_once(const HttpRequest& request) {
  // Readiness reads a flag the session pool keeps; it never calls the HSM itself. (/metrics is
  // not here: one of its gauges reads the store.)
  return request.method == "GET" &&
         (request.target == "/v1/health" || request.target == "/v1/ready");
}

HttpResponse Api::handle(const HttpRequest& request) {
  std::promise<HttpResponse> answer;
  std::future<HttpResponse> future = answer.get_future();
  handle(request, [&answer](HttpResponse response) { answer.set_value(std::move(response)); });
  return future.get();
}

}  // namespace kekd::api
