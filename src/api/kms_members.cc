// Request members of the KMS API, checked as AWS checks them: a member of the wrong JSON type is a
// SerializationException, a value outside its constraints a ValidationException worded like
// AWS's ("1 validation error detected: ..."). Members kekd does not know are ignored, as AWS's
// JSON protocol does, so that clients of newer SDK versions keep working.
#include <botan/mem_ops.h>

#include "kms.h"

namespace kekd::api::kms {
namespace {

// AWS names members in lowerCamelCase inside validation messages ("Value at 'plaintext' ...").
std::string constraint_name(const char* member) {
  std::string name(member);
  if (!name.empty()) name[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(name[0])));
  return name;
}

KmsError constraint(const char* member, const std::string& what) {
  return validation("1 validation error detected: Value at '" + constraint_name(member) +
                    "' failed to satisfy constraint: Member must " + what);
}

KmsError length_error(const char* member, std::size_t length, std::size_t min, std::size_t max) {
  if (length < min) {
    return constraint(member, "have length greater than or equal to " + std::to_string(min));
  }
  return constraint(member, "have length less than or equal to " + std::to_string(max));
}

}  // namespace

KmsResult<Json> parse_body(std::string_view body) {
  // The same bounded parser as the native API; any member is allowed here.
  Result<Json> parsed = parse_json_object(body);
  if (!parsed.ok()) return serialization(parsed.error().message());
  return std::move(*parsed);
}

KmsResult<std::optional<std::string>> string_member(const Json& body, const char* member,
                                                    std::size_t min, std::size_t max) {
  auto it = body.find(member);
  if (it == body.end() || it->is_null()) return std::optional<std::string>();
  if (!it->is_string()) return serialization(std::string("'") + member + "' must be a string");
  const std::string& value = it->get_ref<const std::string&>();
  if (value.size() < min || value.size() > max) return length_error(member, value.size(), min, max);
  return std::optional<std::string>(value);
}

KmsResult<std::string> required_string_member(const Json& body, const char* member, std::size_t min,
                                              std::size_t max) {
  KEKD_ASSIGN_OR_RETURN(std::optional<std::string> value, string_member(body, member, min, max));
  if (!value) return constraint(member, "not be null");
  return std::move(*value);
}

KmsResult<std::optional<SecretBytes>> blob_member(const Json& body, const char* member,
                                                  std::size_t min, std::size_t max) {
  auto it = body.find(member);
  if (it == body.end() || it->is_null()) return std::optional<SecretBytes>();
  if (!it->is_string()) return serialization(std::string("'") + member + "' must be a string");
  // "" is the base64 of no bytes: too short, not malformed.
  if (it->get_ref<const std::string&>().empty()) return length_error(member, 0, min, max);
  Result<SecretBytes> bytes = decode_base64(it->get_ref<const std::string&>(), member);
  if (!bytes.ok()) return serialization(bytes.error().message());
  if (bytes->size() < min || bytes->size() > max) {
    return length_error(member, bytes->size(), min, max);
  }
  return std::optional<SecretBytes>(std::move(*bytes));
}

KmsResult<std::optional<std::uint64_t>> integer_member(const Json& body, const char* member,
                                                       std::uint64_t min, std::uint64_t max) {
  auto it = body.find(member);
  if (it == body.end() || it->is_null()) return std::optional<std::uint64_t>();
  if (!it->is_number_integer()) {
    return serialization(std::string("'") + member + "' must be an integer");
  }
  if (it->is_number_unsigned() || it->get<std::int64_t>() >= 0) {
    std::uint64_t value = it->get<std::uint64_t>();
    if (value > max)
      return constraint(member, "have value less than or equal to " + std::to_string(max));
    if (value >= min) return std::optional<std::uint64_t>(value);
  }
  return constraint(member, "have value greater than or equal to " + std::to_string(min));
}

KmsResult<keys::EncryptionContext> context_member(const Json& body, const char* member) {
  // The JSON shape first (a map of strings), as AWS's protocol checks it; then kekd's bounds.
  auto it = body.find(member);
  if (it != body.end() && !it->is_null()) {
    bool strings = it->is_object();
    for (auto v = it->begin(); strings && v != it->end(); ++v) strings = v->is_string();
    if (!strings) return serialization(std::string("'") + member + "' must be a map of strings");
  }
  Result<keys::EncryptionContext> context = api::context_member(body, member);
  if (!context.ok()) return validation(context.error().message());
  return std::move(*context);
}

KmsResult<bool> common_members(const Json& body, const char* algorithm_member) {
  auto tokens = body.find("GrantTokens");
  if (tokens != body.end() && !tokens->is_null()) {
    if (!tokens->is_array()) return serialization("'GrantTokens' must be a list of strings");
    if (tokens->size() > 10)
      return constraint("GrantTokens", "have length less than or equal to 10");
    for (const Json& t : *tokens) {
      if (!t.is_string()) return serialization("'GrantTokens' must be a list of strings");
    }
  }
  if (algorithm_member != nullptr) {
    KEKD_ASSIGN_OR_RETURN(std::optional<std::string> algorithm,
                          string_member(body, algorithm_member, 1, 64));
    if (algorithm && *algorithm != "SYMMETRIC_DEFAULT") {
      return validation("kekd keys support only the encryption algorithm SYMMETRIC_DEFAULT, not '" +
                        *algorithm + "'");
    }
  }
  if (body.contains("Recipient")) {
    return unsupported("kekd does not support Recipient (Nitro Enclaves attestation)");
  }
  auto dry_run = body.find("DryRun");
  if (dry_run == body.end() || dry_run->is_null()) return false;
  if (!dry_run->is_boolean()) return serialization("'DryRun' must be a boolean");
  return dry_run->get<bool>();
}

}  // namespace kekd::api::kms
