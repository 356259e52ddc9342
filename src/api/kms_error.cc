// AWS KMS's error types for kekd's codes: the KMS face of the one error table (errors.cc is the
// native face). AWS answers client errors with 400 and a type, whatever the cause; the SDKs
// choose their exception classes from the type alone.
#include "kms.h"

namespace kekd::api::kms {

KmsError::KmsError(const Error& error) : message(error.message()), code(error.code()) {
  switch (error.code()) {
    case Code::kInvalidArgument:
    case Code::kMethodNotAllowed:
    case Code::kPayloadTooLarge:
    case Code::kSignatureRejected:
    case Code::kUnknownOperator:
      type = "ValidationException";
      break;
    case Code::kInvalidCiphertext:
      type = "InvalidCiphertextException";
      break;
    case Code::kNotFound:
      type = "NotFoundException";
      break;
    case Code::kAlreadyExists:
      type = "AlreadyExistsException";
      break;
    case Code::kFailedPrecondition:
    case Code::kDuplicateApproval:
      // A key without an enabled version, or a ciphertext of a disabled or destroyed version:
      // what AWS answers for a disabled key (KMSInvalidStateException is for keys pending
      // deletion or import, states a kekd key is never in as a whole).
      type = "DisabledException";
      break;
    case Code::kUnauthenticated:
      type = "UnrecognizedClientException";
      break;
    case Code::kPermissionDenied:
      type = "AccessDeniedException";
      break;
    case Code::kResourceExhausted:
      type = "ThrottlingException";
      break;
    case Code::kUnavailable:
    case Code::kPinIncorrect:
      // The HSM or the store cannot serve now. 503 makes every SDK retry with back-off.
      type = "DependencyTimeoutException";
      status = 503;
      break;
    case Code::kInternal:
      type = "KMSInternalException";
      message = "internal error";  // the detail is for kekd's log, not for the client
      status = 500;
      break;
  }
}

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
