#include "errors.h"

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

namespace kekd::api {

// The one table: for each code, the native API's status, and the AWS KMS API's error type and
// status (AWS answers client errors with 400 and a type; the SDKs choose exceptions by the type).
ErrorFaces faces(Code code) {
  switch (code) {
    case Code::kInvalidArgument:
      return {400, "ValidationException", 400};
    case Code::kInvalidCiphertext:
      return {400, "InvalidCiphertextException", 400};
    case Code::kSignatureRejected:
    case Code::kUnknownOperator:
      return {400, "ValidationException", 400};
    case Code::kUnauthenticated:
      return {401, "UnrecognizedClientException", 400};
    case Code::kPermissionDenied:
      return {403, "AccessDeniedException", 400};
    case Code::kNotFound:
      return {404, "NotFoundException", 400};
    case Code::kMethodNotAllowed:
      return {405, "ValidationException", 400};
    case Code::kAlreadyExists:
      return {409, "AlreadyExistsException", 400};
    case Code::kFailedPrecondition:
    case Code::kDuplicateApproval:
      // For KMS: a key without an enabled version, or a ciphertext of a disabled or destroyed
      // version, is what AWS calls a disabled key (KMSInvalidStateException is for keys pending
      // deletion or import, states a kekd key is never in as a whole).
      return {409, "DisabledException", 400};
    case Code::kPayloadTooLarge:
      return {413, "ValidationException", 400};
    case Code::kResourceExhausted:
      return {429, "ThrottlingException", 400};
    case Code::kUnavailable:
    case Code::kPinIncorrect:
      // The HSM or the store cannot serve now; 503 makes clients and every AWS SDK retry.
      return {503, "DependencyTimeoutException", 503};
    case Code::kInternal:
      return {500, "KMSInternalException", 500};
  }
  return {500, "KMSInternalException", 500};
}

int http_status(Code code) { return faces(code).status; }

std::string client_message(const Error& error, std::string_view request_id) {
  if (error.code() != Code::kInternal) {
    return error.message();
  }
  // kekd's own messages never quote a secret (docs/secret-hygiene.md), so the detail may be logged.
  if (request_id.empty()) {
    spdlog::error("internal error: {}", error.message());
  } else {
    spdlog::error("internal error, request id={}: {}", request_id, error.message());
  }
  return "internal error";
}

HttpResponse error_response(const Error& error, const std::string& request_id) {
  HttpResponse response;
  response.status = http_status(error.code());
  std::string message = client_message(error, request_id);
  nlohmann::json body = {{"error",
                          {{"code", std::string(code_name(error.code()))},
                           {"message", message},
                           {"request_id", request_id}}}};
  // A message may quote the request (a path, a key name) and so hold bytes that are not UTF-8:
  // replace them rather than throw, or the client would get a 500 for its own bad input.
  response.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return response;
}

}  // namespace kekd::api
