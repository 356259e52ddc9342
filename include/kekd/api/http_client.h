// A small blocking HTTP/1.1 client for kekd's API (kekctl and the sealed-file commands). Plain
// types only: Beast stays inside src/api, like on the server side.
//
// One client holds at most one keep-alive connection and reuses it across requests; it is not
// thread-safe (one client per thread).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "kekd/common/error.h"

namespace kekd::api {

struct Endpoint {
  std::string url;      // http://host:port or https://host:port, optionally with a path prefix
  std::string ca_file;  // PEM CA bundle to verify the server; empty = the system's default paths
  std::string client_cert;  // PEM client certificate (chain), with client_key; both or neither
  std::string client_key;
};

struct ClientTimeouts {
  std::chrono::milliseconds connect{std::chrono::seconds(10)};  // resolve, TCP and TLS handshake
  std::chrono::milliseconds request{
      std::chrono::seconds(60)};  // write the request, read the answer
};

struct ClientResponse {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // names in lower case
};

class HttpClient {
 public:
  // Checks the URL and loads the TLS files; connects on the first request. kInvalidArgument for a
  // malformed URL or an unreadable certificate, key or CA file.
  static Result<std::unique_ptr<HttpClient>> create(Endpoint endpoint,
                                                    ClientTimeouts timeouts = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends one request and reads its answer, whatever its status. `target` is the path and query
  // ("/v1/keys"), appended to the URL's path prefix. kUnavailable when kekd cannot be reached, the
  // TLS handshake fails or the connection breaks; kInvalidArgument for an unknown method.
  Result<ClientResponse> request(std::string_view method, std::string_view target,
                                 std::string_view body,
                                 const std::map<std::string, std::string>& headers);

  // The URL as given, for messages.
  const std::string& url() const;

 private:
  struct Impl;
  explicit HttpClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kekd::api
