#include "json_body.h"

#include <botan/base64.h>

namespace kekd::api {
namespace {

Error bad(std::string message) { return Error(Code::kInvalidArgument, std::move(message)); }

// nlohmann parses iteratively but serialises recursively (dump()): a body of a few hundred
// thousand nested arrays parses fine and then overflows the stack when a handler dumps part of it.
// No request body of this API nests deeper than a few levels.
constexpr int kMaxDepth = 32;

bool too_deep(std::string_view body) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : body) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxDepth) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

}  // namespace

Result<Json> parse_json_object(std::string_view body) {
  // Checked before parsing, so that a hostile body is never built into a deep tree at all.
  if (too_deep(body)) {
    return bad("request body nests deeper than " + std::to_string(kMaxDepth) + " levels");
  }
  Json value = Json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  // nlohmann stops at a NUL byte as if the input ended there, so '{}\0garbage' would parse as {}.
  // JSON text never holds a raw NUL (not even inside a string), so such a body is malformed.
  if (value.is_discarded() || body.find('\0') != std::string_view::npos) {
    return bad("request body is not valid JSON");
  }
  if (!value.is_object()) {
    return bad("request body must be a JSON object");
  }
  return value;
}

Result<Json> parse_object(std::string_view body, std::initializer_list<std::string_view> allowed) {
  KEKD_ASSIGN_OR_RETURN(Json value, parse_json_object(body));
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

Result<SecretBytes> decode_base64(const std::string& text, std::string_view member) {
  auto invalid = [&] {
    return Error(Code::kInvalidArgument, "'" + std::string(member) + "' is not valid base64");
  };
  bool ok = !text.empty() && text.size() % 4 == 0;
  for (std::size_t i = 0; ok && i < text.size(); ++i) {
    char c = text[i];
    bool pad = c == '=' && i >= text.size() - 2 && (i == text.size() - 1 || text.back() == '=');
    ok = std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/' || pad;
  }
  if (!ok) return invalid();
  try {
    return Botan::base64_decode(text, false);
  } catch (const std::exception&) {
    return invalid();
  }
}

std::string encode_base64(ByteView bytes) {
  return Botan::base64_encode(bytes.data(), bytes.size());
}

Result<keys::EncryptionContext> context_member(const Json& object, std::string_view member) {
  constexpr std::size_t kMaxContextBytes = 8192;
  const std::string name(member);
  auto bad = [&](const std::string& what) {
    return Error(Code::kInvalidArgument, "'" + name + "' " + what);
  };
  keys::EncryptionContext context;
  auto it = object.find(name);
  if (it == object.end() || it->is_null()) return context;
  if (!it->is_object()) return bad("must be an object of strings");
  std::size_t total = 0;
  for (const auto& [k, v] : it->items()) {
    if (!v.is_string()) return bad("values must be strings");
    if (k.empty()) return bad("keys must not be empty");
    total += k.size() + v.get_ref<const std::string&>().size();
    context.emplace(k, v.get<std::string>());
  }
  if (total > kMaxContextBytes) return bad("is larger than 8192 bytes");
  return context;
}

}  // namespace kekd::api
