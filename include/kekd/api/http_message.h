// HTTP requests and responses as plain values. The request logic (api.h) works on these, so it
// is tested without sockets; only src/api/server.cc converts them from and to Beast's types.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace kekd::api {

struct HttpRequest {
  std::string method;                          // "GET", "POST", ...
  std::string target;                          // path and query, as sent
  std::map<std::string, std::string> headers;  // names in lower case; repeats joined with ','.
  std::string body;
  std::string request_id;  // assigned by the server, echoed in X-Request-Id

  // The header's value, or "" when absent.
  const std::string& header(const std::string& lower_name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string route = "unmatched";  // the route pattern, for metrics
};

}  // namespace kekd::api
