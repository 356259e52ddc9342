// AWS KMS's error bodies. The type and status of a kekd code come from the one error table
// (errors.cc); the errors here without a kekd code (ValidationException for AWS's own constraints,
// SerializationException, ...) are AWS's own, always 400.
#include "errors.h"
#include "kms.h"

namespace kekd::api::kms {

KmsError::KmsError(const Error& error)
    : type(faces(error.code()).kms_type),
      message(client_message(error)),
      status(faces(error.code()).kms_status),
      code(error.code()) {}

KmsError validation(std::string message) {
  return KmsError("ValidationException", std::move(message));
}

KmsError serialization(std::string message) {
  return KmsError("SerializationException", std::move(message));
}

KmsError unsupported(std::string message) {
  KmsError error("UnsupportedOperationException", std::move(message));
  error.code = Code::kFailedPrecondition;
  return error;
}

HttpResponse error_response(const KmsError& error, const std::string& request_id) {
  // botocore reads the type from "__type" (and drops anything up to a '#'); AWS sends both
  // spellings of the message member, so clients that look for either find it.
  Json body = {{"__type", error.type}, {"message", error.message}};
  HttpResponse response;
  response.status = error.status;
  response.content_type = "application/x-amz-json-1.1";
  response.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  response.headers.emplace_back("x-amzn-RequestId", request_id);
  return response;
}

HttpResponse json_answer(const Json& body, const std::string& request_id) {
  HttpResponse response;
  response.content_type = "application/x-amz-json-1.1";
  response.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  response.headers.emplace_back("x-amzn-RequestId", request_id);
  return response;
}

}  // namespace kekd::api::kms
