#include "errors.h"

#include <nlohmann/json.hpp>

namespace kekd::api {

int http_status(Code code) {
  switch (code) {
    case Code::kInvalidArgument:
    case Code::kInvalidCiphertext:
    case Code::kSignatureRejected:
    case Code::kUnknownOperator:
      return 400;
    case Code::kUnauthenticated:
      return 401;
    case Code::kPermissionDenied:
      return 403;
    case Code::kNotFound:
      return 404;
    case Code::kMethodNotAllowed:
      return 405;
    case Code::kAlreadyExists:
    case Code::kFailedPrecondition:
    case Code::kDuplicateApproval:
      return 409;
    case Code::kPayloadTooLarge:
      return 413;
    case Code::kResourceExhausted:
      return 429;
    case Code::kUnavailable:
    case Code::kPinIncorrect:
      return 503;
    case Code::kInternal:
      return 500;
  }
  return 500;
}

HttpResponse error_response(const Error& error, const std::string& request_id) {
  HttpResponse response;
  response.status = http_status(error.code());
  // An internal error's detail is for the log, not for the client.
  std::string message = error.code() == Code::kInternal ? "internal error" : error.message();
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
