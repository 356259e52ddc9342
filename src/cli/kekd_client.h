// kekd's native REST API as kekctl's commands (and the sealed-file commands) see it: JSON in,
// JSON out, and an API error turned into a kekd::Error.
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <string_view>

#include "connection.h"
#include "kekd/api/http_client.h"
#include "kekd/common/error.h"

namespace kekd::cli {

class KekdClient {
 public:
  // A connection that could not be resolved (no token, a bad --cacert) is an error of the first
  // call, so that commands that never call kekd (`audit verify`) run without one.
  explicit KekdClient(Result<Connection> connection);
  ~KekdClient();
  KekdClient(const KekdClient&) = delete;
  KekdClient& operator=(const KekdClient&) = delete;

  // Sends `body` (none when null) as JSON with the bearer token and returns kekd's JSON answer.
  // An error answer becomes an Error with the API's code and the message
  // "<status> <code>: <message> (request <request id>)"; kUnavailable when kekd cannot be
  // reached or the TLS handshake fails. Connects on the first call and keeps the connection.
  Result<nlohmann::json> call(std::string_view method, std::string target,
                              const nlohmann::json* body);

  // A request without a body whose answer is not JSON (a backup, a PEM): the response as it is
  // for a 2xx, the same Error as call() otherwise.
  Result<api::ClientResponse> fetch(std::string_view method, std::string target);

 private:
  Result<api::ClientResponse> send(std::string_view method, const std::string& target,
                                   std::string body, std::string_view content_type);

  Result<Connection> connection_;
  std::unique_ptr<api::HttpClient> http_;
};

// A path segment for a target: a key name or client id, percent-encoded ('.' too, so that ".."
// stays a name) so that nothing in it can reach another endpoint.
std::string path_segment(std::string_view text);

}  // namespace kekd::cli
