#include "kekd_client.h"

#include <botan/mem_ops.h>

#include <map>

namespace kekd::cli {
namespace {

using Json = nlohmann::json;

void scrub(std::string& text) { Botan::secure_scrub_memory(text.data(), text.size()); }

// The API's own code when it names one we know, so callers can tell not_found from the rest.
Code code_from_name(std::string_view name, int status) {
  for (int i = 0; i <= static_cast<int>(Code::kInternal); ++i) {
    if (code_name(static_cast<Code>(i)) == name) return static_cast<Code>(i);
  }
  switch (status) {
    case 400:
      return Code::kInvalidArgument;
    case 401:
      return Code::kUnauthenticated;
    case 403:
      return Code::kPermissionDenied;
    case 404:
      return Code::kNotFound;
    case 405:
      return Code::kMethodNotAllowed;
    case 409:
      return Code::kFailedPrecondition;
    case 413:
      return Code::kPayloadTooLarge;
    case 429:
      return Code::kResourceExhausted;
    case 502:
    case 503:
    case 504:
      return Code::kUnavailable;
    default:
      return Code::kInternal;
  }
}

// kekd answers errors as {"error": {code, message, request_id}}; something in between (a proxy, a
// load balancer) may answer in its own words, which are shown as they are, shortened.
Error api_error(const api::ClientResponse& response) {
  std::string code;
  std::string message;
  std::string request_id;
  Json body = Json::parse(response.body, nullptr, false);
  if (body.is_object() && body.contains("error") && body["error"].is_object()) {
    const Json& e = body["error"];
    if (e.contains("code") && e["code"].is_string()) code = e["code"].get<std::string>();
    if (e.contains("message") && e["message"].is_string()) {
      message = e["message"].get<std::string>();
    }
    if (e.contains("request_id") && e["request_id"].is_string()) {
      request_id = e["request_id"].get<std::string>();
    }
  } else {
    message = response.body.substr(0, response.body.find('\n'));
    if (message.size() > 200) message = message.substr(0, 200) + "...";
    if (message.empty()) message = "(no message)";
  }
  if (request_id.empty()) {
    auto header = response.headers.find("x-request-id");
    if (header != response.headers.end()) request_id = header->second;
  }
  Code c = code_from_name(code, response.status);
  if (code.empty()) code = code_name(c);
  std::string line = std::to_string(response.status) + " " + code + ": " + message;
  if (!request_id.empty()) line += " (request " + request_id + ")";
  return Error(c, line);
}

}  // namespace

KekdClient::KekdClient(Result<Connection> connection) : connection_(std::move(connection)) {}
KekdClient::~KekdClient() = default;

Result<api::ClientResponse> KekdClient::send(std::string_view method, const std::string& target,
                                             std::string body, std::string_view content_type) {
  if (!connection_.ok()) {
    scrub(body);
    return connection_.error();
  }
  if (!http_) {
    KEKD_ASSIGN_OR_RETURN(http_, api::HttpClient::create(connection_->endpoint));
  }
  std::map<std::string, std::string> headers = {{"Accept", "application/json"},
                                                {"User-Agent", "kekctl/" KEKD_VERSION}};
  if (!content_type.empty()) headers["Content-Type"] = std::string(content_type);
  if (!connection_->token.empty()) {
    headers["Authorization"] =
        "Bearer " + std::string(connection_->token.begin(), connection_->token.end());
  }
  Result<api::ClientResponse> response = http_->request(method, target, body, headers);
  // Request bodies may hold plaintexts, the header the token: neither outlives the call.
  scrub(body);
  if (auto it = headers.find("Authorization"); it != headers.end()) scrub(it->second);
  if (!response.ok()) return response.error();
  if (response->status < 200 || response->status > 299) return api_error(*response);
  return response;
}

Result<Json> KekdClient::call(std::string_view method, std::string target, const Json* body) {
  std::string text;
  if (body != nullptr) text = body->dump();
  KEKD_ASSIGN_OR_RETURN(api::ClientResponse response,
                        send(method, target, std::move(text),
                             body != nullptr ? "application/json" : ""));
  Json answer;
  if (!response.body.empty()) {
    answer = Json::parse(response.body, nullptr, false);
    scrub(response.body);
    if (answer.is_discarded()) {
      return Error(Code::kInternal, "the answer from " + connection_->endpoint.url + target +
                                        " is not JSON (status " + std::to_string(response.status) +
                                        ")");
    }
  }
  return answer;
}

Result<api::ClientResponse> KekdClient::fetch(std::string_view method, std::string target) {
  return send(method, target, std::string(), "");
}

std::string path_segment(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    bool unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_' || c == '~';
    if (unreserved) {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  return out;
}

}  // namespace kekd::cli
