// Strict decoding of JSON request bodies: the body must be one object, every member must be known
// (a typo like "contxt" is an error, not a silently ignored field), and every member must have
// the expected type. Errors name the member.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include "kekd/common/error.h"

namespace kekd::api {

using Json = nlohmann::json;

Result<Json> parse_object(std::string_view body, std::initializer_list<std::string_view> allowed);

Result<std::optional<std::string>> optional_string(const Json& object, const char* member);
Result<std::string> required_string(const Json& object, const char* member);
Result<std::optional<std::uint64_t>> optional_uint(const Json& object, const char* member,
                                                   std::uint64_t min, std::uint64_t max);
Result<std::optional<bool>> optional_bool(const Json& object, const char* member);

// The response body for a value: compact JSON and a final LF.
std::string dump(const Json& value);

}  // namespace kekd::api
