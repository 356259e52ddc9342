// The one table that turns a kekd error code into an HTTP status, and the JSON error body of the
// native API: {"error": {"code", "message", "request_id"}}. No status is chosen anywhere else, and
// never from a message's text.
#pragma once

#include "kekd/api/http_message.h"
#include "kekd/common/error.h"

namespace kekd::api {

int http_status(Code code);
HttpResponse error_response(const Error& error, const std::string& request_id);

}  // namespace kekd::api
