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
  explicit KekdClient(Connection connection);
  ~KekdClient();
  KekdClient(const KekdClient&) = delete;
  KekdClient& operator=(const KekdClient&) = delete;

  // Sends `body` (none when null) as JSON with the bearer token and returns kekd's JSON answer.
  // An error answer becomes an Error with the API's code and the message
  // "<status> <code>: <message> (request <request id>)"; kUnavailable when kekd cannot be
  // reached or the TLS handshake fails. Connects on the first call and keeps the connection.
  Result<nlohmann::json> call(std::string_view method, std::string target,
                              const nlohmann::json* body);

 private:
  Connection connection_;
  std::unique_ptr<api::HttpClient> http_;
};

// A path segment for a target: a key name or client id, percent-encoded ('.' too, so that ".."
// stays a name) so that nothing in it can reach another endpoint.
std::string path_segment(std::string_view text);

}  // namespace kekd::cli
