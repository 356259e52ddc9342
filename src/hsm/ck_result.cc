#include "ck_result.h"

#include <cstdio>
#include <string>

namespace kekd::hsm {
namespace {

struct CkRow {
  CK_RV rv;
  std::string_view name;
  Code code;         // meaning in every call but C_UnwrapKey
  Code unwrap_code;  // meaning in C_UnwrapKey
};

// The table. Anything not listed is kInternal: an answer we did not plan for is a bug to look at,
// not something to guess about.
constexpr CkRow kTable[] = {
    {CKR_GENERAL_ERROR, "CKR_GENERAL_ERROR", Code::kUnavailable, Code::kInvalidCiphertext},
    {CKR_WRAPPED_KEY_INVALID, "CKR_WRAPPED_KEY_INVALID", Code::kInternal, Code::kInvalidCiphertext},
    {CKR_WRAPPED_KEY_LEN_RANGE, "CKR_WRAPPED_KEY_LEN_RANGE", Code::kInternal,
     Code::kInvalidCiphertext},
    {CKR_ENCRYPTED_DATA_INVALID, "CKR_ENCRYPTED_DATA_INVALID", Code::kInternal,
     Code::kInvalidCiphertext},
    {CKR_ENCRYPTED_DATA_LEN_RANGE, "CKR_ENCRYPTED_DATA_LEN_RANGE", Code::kInternal,
     Code::kInvalidCiphertext},
    {CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR", Code::kUnavailable, Code::kUnavailable},
    {CKR_DEVICE_MEMORY, "CKR_DEVICE_MEMORY", Code::kUnavailable, Code::kUnavailable},
    {CKR_DEVICE_REMOVED, "CKR_DEVICE_REMOVED", Code::kUnavailable, Code::kUnavailable},
    {CKR_TOKEN_NOT_PRESENT, "CKR_TOKEN_NOT_PRESENT", Code::kUnavailable, Code::kUnavailable},
    {CKR_TOKEN_NOT_RECOGNIZED, "CKR_TOKEN_NOT_RECOGNIZED", Code::kUnavailable, Code::kUnavailable},
    {CKR_SESSION_HANDLE_INVALID, "CKR_SESSION_HANDLE_INVALID", Code::kUnavailable,
     Code::kUnavailable},
    {CKR_SESSION_CLOSED, "CKR_SESSION_CLOSED", Code::kUnavailable, Code::kUnavailable},
    {CKR_SESSION_COUNT, "CKR_SESSION_COUNT", Code::kUnavailable, Code::kUnavailable},
    {CKR_USER_NOT_LOGGED_IN, "CKR_USER_NOT_LOGGED_IN", Code::kUnavailable, Code::kUnavailable},
    {CKR_HOST_MEMORY, "CKR_HOST_MEMORY", Code::kUnavailable, Code::kUnavailable},
    {CKR_FUNCTION_FAILED, "CKR_FUNCTION_FAILED", Code::kUnavailable, Code::kUnavailable},
    {CKR_CRYPTOKI_NOT_INITIALIZED, "CKR_CRYPTOKI_NOT_INITIALIZED", Code::kUnavailable,
     Code::kUnavailable},
    {CKR_PIN_INCORRECT, "CKR_PIN_INCORRECT", Code::kPinIncorrect, Code::kPinIncorrect},
    {CKR_PIN_LOCKED, "CKR_PIN_LOCKED", Code::kPinIncorrect, Code::kPinIncorrect},
    {CKR_PIN_EXPIRED, "CKR_PIN_EXPIRED", Code::kPinIncorrect, Code::kPinIncorrect},
    {CKR_PIN_INVALID, "CKR_PIN_INVALID", Code::kPinIncorrect, Code::kPinIncorrect},
    {CKR_PIN_LEN_RANGE, "CKR_PIN_LEN_RANGE", Code::kPinIncorrect, Code::kPinIncorrect},
    {CKR_OBJECT_HANDLE_INVALID, "CKR_OBJECT_HANDLE_INVALID", Code::kNotFound, Code::kNotFound},
    {CKR_KEY_HANDLE_INVALID, "CKR_KEY_HANDLE_INVALID", Code::kNotFound, Code::kNotFound},
    {CKR_WRAPPING_KEY_HANDLE_INVALID, "CKR_WRAPPING_KEY_HANDLE_INVALID", Code::kNotFound,
     Code::kNotFound},
    {CKR_UNWRAPPING_KEY_HANDLE_INVALID, "CKR_UNWRAPPING_KEY_HANDLE_INVALID", Code::kNotFound,
     Code::kNotFound},
    {CKR_DATA_LEN_RANGE, "CKR_DATA_LEN_RANGE", Code::kInvalidArgument, Code::kInvalidArgument},
    {CKR_KEY_SIZE_RANGE, "CKR_KEY_SIZE_RANGE", Code::kInvalidArgument, Code::kInvalidArgument},
    {CKR_ARGUMENTS_BAD, "CKR_ARGUMENTS_BAD", Code::kInternal, Code::kInternal},
    {CKR_ATTRIBUTE_SENSITIVE, "CKR_ATTRIBUTE_SENSITIVE", Code::kInternal, Code::kInternal},
    {CKR_ATTRIBUTE_READ_ONLY, "CKR_ATTRIBUTE_READ_ONLY", Code::kInternal, Code::kInternal},
    {CKR_ATTRIBUTE_VALUE_INVALID, "CKR_ATTRIBUTE_VALUE_INVALID", Code::kInternal, Code::kInternal},
    {CKR_TEMPLATE_INCOMPLETE, "CKR_TEMPLATE_INCOMPLETE", Code::kInternal, Code::kInternal},
    {CKR_TEMPLATE_INCONSISTENT, "CKR_TEMPLATE_INCONSISTENT", Code::kInternal, Code::kInternal},
    {CKR_MECHANISM_INVALID, "CKR_MECHANISM_INVALID", Code::kInternal, Code::kInternal},
    {CKR_KEY_FUNCTION_NOT_PERMITTED, "CKR_KEY_FUNCTION_NOT_PERMITTED", Code::kInternal,
     Code::kInternal},
    {CKR_KEY_UNEXTRACTABLE, "CKR_KEY_UNEXTRACTABLE", Code::kInternal, Code::kInternal},
    {CKR_KEY_NOT_WRAPPABLE, "CKR_KEY_NOT_WRAPPABLE", Code::kInternal, Code::kInternal},
    {CKR_ACTION_PROHIBITED, "CKR_ACTION_PROHIBITED", Code::kInternal, Code::kInternal},
    {CKR_BUFFER_TOO_SMALL, "CKR_BUFFER_TOO_SMALL", Code::kInternal, Code::kInternal},
    {CKR_OPERATION_ACTIVE, "CKR_OPERATION_ACTIVE", Code::kInternal, Code::kInternal},
    {CKR_TOKEN_WRITE_PROTECTED, "CKR_TOKEN_WRITE_PROTECTED", Code::kUnavailable,
     Code::kUnavailable},
};

const CkRow* find_row(CK_RV rv) {
  for (const CkRow& row : kTable) {
    if (row.rv == rv) {
      return &row;
    }
  }
  return nullptr;
}

}  // namespace

std::string_view ck_rv_name(CK_RV rv) {
  const CkRow* row = find_row(rv);
  return row != nullptr ? row->name : std::string_view("CKR_(unlisted)");
}

Error ck_error(CK_RV rv, std::string_view what, CkCall call) {
  const CkRow* row = find_row(rv);
  char hex[32];
  std::snprintf(hex, sizeof hex, "0x%08lx", static_cast<unsigned long>(rv));
  std::string message(what);
  message += " failed: ";
  message += row != nullptr ? row->name : std::string_view("unlisted return value");
  message += " (";
  message += hex;
  message += ")";
  if (row == nullptr) {
    return Error(Code::kInternal, std::move(message));
  }
  Code code = call == CkCall::kUnwrap ? row->unwrap_code : row->code;
  if (code == Code::kInvalidCiphertext) {
    // Which integrity check failed is not the caller's business (DESIGN §4): one message.
    return Error(code, "ciphertext is invalid or does not match the key or context");
  }
  return Error(code, std::move(message));
}

bool ck_session_lost(CK_RV rv) {
  return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
         rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_DEVICE_REMOVED ||
         rv == CKR_CRYPTOKI_NOT_INITIALIZED;
}

bool ck_device_failed(CK_RV rv) {
  // A session that lost its login is still open: closing and reopening it logs in again.
  return rv == CKR_DEVICE_ERROR || rv == CKR_DEVICE_MEMORY || rv == CKR_FUNCTION_FAILED ||
         rv == CKR_USER_NOT_LOGGED_IN;
}

}  // namespace kekd::hsm
