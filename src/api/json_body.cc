#include "json_body.h"

namespace kekd::api {
namespace {

Error bad(std::string message) { return Error(Code::kInvalidArgument, std::move(message)); }

}  // namespace

Result<Json> parse_object(std::string_view body, std::initializer_list<std::string_view> allowed) {
  Json value = Json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) {
    return bad("request body is not valid JSON");
  }
  if (!value.is_object()) {
    return bad("request body must be a JSON object");
  }
  for (const auto& [name, member] : value.items()) {
    bool known = false;
    for (std::string_view a : allowed) known = known || a == name;
    if (!known) {
      return bad("unknown member '" + name + "'");
    }
  }
  return value;
}

Result<std::optional<std::string>> optional_string(const Json& object, const char* member) {
  auto it = object.find(member);
  if (it == object.end() || it->is_null()) {
    return std::optional<std::string>();
  }
  if (!it->is_string()) {
    return bad(std::string("'") + member + "' must be a string");
  }
  return std::optional<std::string>(it->get<std::string>());
}

Result<std::string> required_string(const Json& object, const char* member) {
  KEKD_ASSIGN_OR_RETURN(std::optional<std::string> value, optional_string(object, member));
  if (!value) {
    return bad(std::string("'") + member + "' is required");
  }
  return std::move(*value);
}

Result<std::optional<std::uint64_t>> optional_uint(const Json& object, const char* member,
                                                   std::uint64_t min, std::uint64_t max) {
  auto it = object.find(member);
  if (it == object.end() || it->is_null()) {
    return std::optional<std::uint64_t>();
  }
  // nlohmann types a non-negative integer as unsigned; a negative one as signed only.
  if (!it->is_number_unsigned()) {
    return bad(std::string("'") + member + "' must be a whole number, not negative");
  }
  std::uint64_t value = it->get<std::uint64_t>();
  if (value < min || value > max) {
    return bad(std::string("'") + member + "' must be between " + std::to_string(min) + " and " +
               std::to_string(max));
  }
  return std::optional<std::uint64_t>(value);
}

Result<std::optional<bool>> optional_bool(const Json& object, const char* member) {
  auto it = object.find(member);
  if (it == object.end() || it->is_null()) {
    return std::optional<bool>();
  }
  if (!it->is_boolean()) {
    return bad(std::string("'") + member + "' must be true or false");
  }
  return std::optional<bool>(it->get<bool>());
}

std::string dump(const Json& value) {
  // Replace invalid UTF-8 rather than throw: a response must always be producible.
  return value.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
}

}  // namespace kekd::api
