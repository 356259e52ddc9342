// The one table that turns a kekd error code into an HTTP status (native and KMS-style, with the
// KMS error type), and the JSON error body of the native API:
// {"error": {"code", "message", "request_id"}}. No status is chosen anywhere else, and
// never from a message's text.
#pragma once

#include <string>
#include <string_view>

#include "kekd/api/http_message.h"
#include "kekd/common/error.h"

namespace kekd::api {

// What a code looks like to a client: the native status, and the KMS API's type and status.
struct ErrorFaces {
  int status;
  std::string_view kms_type;
  int kms_status;
};
ErrorFaces faces(Code code);

int http_status(Code code);
HttpResponse error_response(const Error& error, const std::string& request_id);

// The message a client sees for error. An internal error's detail is for the operator, not the
// client: the client gets "internal error", and the detail goes to the log at error level (with
// request_id when there is one), so that a 500 can always be explained.
std::string client_message(const Error& error, std::string_view request_id = {});

}  // namespace kekd::api
