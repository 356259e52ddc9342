#include "kekd/common/error.h"

namespace kekd {

std::string_view code_name(Code code) {
  switch (code) {
    case Code::kInvalidArgument:
      return "invalid_argument";
    case Code::kInvalidCiphertext:
      return "invalid_ciphertext";
    case Code::kNotFound:
      return "not_found";
    case Code::kMethodNotAllowed:
      return "method_not_allowed";
    case Code::kAlreadyExists:
      return "already_exists";
    case Code::kFailedPrecondition:
      return "failed_precondition";
    case Code::kUnauthenticated:
      return "unauthenticated";
    case Code::kPermissionDenied:
      return "permission_denied";
    case Code::kResourceExhausted:
      return "resource_exhausted";
    case Code::kPayloadTooLarge:
      return "payload_too_large";
    case Code::kUnavailable:
      return "unavailable";
    case Code::kPinIncorrect:
      return "pin_incorrect";
    case Code::kSignatureRejected:
      return "signature_rejected";
    case Code::kUnknownOperator:
      return "unknown_operator";
    case Code::kDuplicateApproval:
      return "duplicate_approval";
    case Code::kInternal:
      return "internal";
  }
  return "internal";
}

std::string Error::to_string() const {
  std::string s(code_name(code_));
  s += ": ";
  s += message_;
  return s;
}

}  // namespace kekd
