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

}  // namespace kekd::api
