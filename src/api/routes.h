// The route table and what a handler sees. Handlers live in files by subject (api.cc: health,
// readiness, metrics, keys; ceremony_routes.cc: operators, ceremonies, transcripts).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "json_body.h"
#include "kekd/api/api.h"

namespace kekd::api {

struct Api::Context {
  const HttpRequest& request;
  std::vector<std::string> params;  // the {placeholders} of the route, in order
  std::string query;                // after '?', undecoded
  std::optional<Principal> principal;
  // Set once the handler has recorded the request's audit events: Api::handle then does not add
  // an "auth.failure" record for a refusal the handler accounted for itself.
  bool audited = false;
  // What record_audit collected; Api::handle submits them and answers once they are durable.
  std::vector<audit::AuditEvent> audit_events = {};

  // The value of name in the query string, or nullopt.
  std::optional<std::string> query_param(std::string_view name) const;
};

enum class Access { kAnyone, kAuthenticated, kAdmin };

using RouteHandler = std::function<Result<HttpResponse>(const ApiServices&, Api::Context&)>;

struct Route {
  std::string method;
  std::string pattern;  // "/v1/ceremonies/{id}/approvals"
  Access access;
  RouteHandler handler;
};

HttpResponse json_response(const Json& body, int status = 200);
HttpResponse text_response(std::string body, std::string content_type);

void add_ceremony_routes(std::vector<Route>& routes);
void add_key_routes(std::vector<Route>& routes);
void add_client_routes(std::vector<Route>& routes);
void add_audit_routes(std::vector<Route>& routes);   // audit_routes.cc
void add_backup_routes(std::vector<Route>& routes);  // backup_routes.cc

// An audit event of this request: its request id and principal (the authenticated client, or
// who the handler says it is), the action ("key.wrap", docs/audit.md), nothing else yet.
audit::AuditEvent audit_event(const Api::Context& c, std::string action);

// The error code of a failed result, std::nullopt for success: an audit event's outcome.
template <typename R>
std::optional<Code> failure_of(const R& result) {
  return result.ok() ? std::nullopt : std::optional<Code>(result.error().code());
}

// Adds the events to the request's records. Api::handle submits them once the handler is done
// and answers only when they are durable; if the log cannot take them, the answer is 503 instead
// of the handler's, because an operation kekd cannot account for must not be reported as done.
// (A Status so that handlers need not care whether recording waits; today it never fails.)
Status record_audit(const ApiServices& s, Api::Context& c, std::vector<audit::AuditEvent> events);
Status record_audit(const ApiServices& s, Api::Context& c, audit::AuditEvent event);

// The answer to a request whose records the log refused (503).
Error audit_unavailable(const Error& error);

}  // namespace kekd::api
