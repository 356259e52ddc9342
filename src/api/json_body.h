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

#include "kekd/common/bytes.h"
#include "kekd/common/error.h"
#include "kekd/keys/encryption_context.h"

namespace kekd::api {

using Json = nlohmann::json;

// The body as one JSON object, whatever its members: bounded nesting, no NUL bytes.
Result<Json> parse_json_object(std::string_view body);
// The same, and every member must be one of `allowed`.
Result<Json> parse_object(std::string_view body, std::initializer_list<std::string_view> allowed);

Result<std::optional<std::string>> optional_string(const Json& object, const char* member);
Result<std::string> required_string(const Json& object, const char* member);
Result<std::optional<std::uint64_t>> optional_uint(const Json& object, const char* member,
                                                   std::uint64_t min, std::uint64_t max);
Result<std::optional<bool>> optional_bool(const Json& object, const char* member);

// Standard base64 with padding, nothing else (no whitespace, no URL alphabet); the error names
// the member the text came from.
Result<SecretBytes> decode_base64(const std::string& text, std::string_view member);
std::string encode_base64(ByteView bytes);

// The encryption context in object[member] (DESIGN §4): an object of strings, non-empty keys,
// at most 8192 bytes in all, as AWS KMS limits it. Absent or null is the empty context.
Result<keys::EncryptionContext> context_member(const Json& object, std::string_view member);

// The response body for a value: compact JSON and a final LF.
std::string dump(const Json& value);

}  // namespace kekd::api
