// DescribeKey, ListKeys and ListAliases. A client sees the keys it holds a describe grant for (the
// admin sees all), as on GET /v1/keys. Each kekd key is one KMS key whose KeyId is its UUID and
// whose one alias is "alias/<name>".
#include "kms.h"

namespace kekd::api::kms {
namespace {

constexpr std::size_t kMaxKeyId = 2048;
constexpr std::size_t kMaxMarker = 1024;
// Markers are "after:<last key name of the page>": the prefix tells one kekd issued from a guess.
constexpr std::string_view kMarkerPrefix = "after:";

bool visible(const Call& call, const keys::KeyInfo& key) {
  return call.context.principal->admin ||
         allows(call.context.principal->grants, key.record.name, Operation::kDescribe);
}

// AWS's timestamps in JSON 1.1 are seconds since the epoch, with a fraction.
double epoch_seconds(UnixMillis t) { return static_cast<double>(t) / 1000.0; }

Json key_metadata(const KmsIdentity& scope, const keys::KeyInfo& key) {
  const bool enabled = key.primary_version != 0;
  return {{"AWSAccountId", scope.account},
          {"KeyId", key.record.id},
          {"Arn", key_arn(scope, key.record.id)},
          {"CreationDate", epoch_seconds(key.record.created_at)},
          {"Enabled", enabled},
          {"Description", "kekd key '" + key.record.name + "'"},
          {"KeyUsage", "ENCRYPT_DECRYPT"},
          // No enabled version left: nothing can be encrypted, as with a disabled AWS key.
          {"KeyState", enabled ? "Enabled" : "Disabled"},
          {"Origin", "AWS_KMS"},
          {"KeyManager", "CUSTOMER"},
          {"CustomerMasterKeySpec", "SYMMETRIC_DEFAULT"},
          {"KeySpec", "SYMMETRIC_DEFAULT"},
          {"EncryptionAlgorithms", Json::array({"SYMMETRIC_DEFAULT"})},
          {"MultiRegion", false}};
}

// One page of the keys this client sees, in name order, after the key named by the marker.
// The marker is the last name of the previous page: opaque to clients, and stable while keys
// are added (a new key lands on the page its name sorts into).
struct Page {
  std::vector<keys::KeyInfo> keys;
  std::optional<std::string> next_marker;
};

KmsResult<Page> page_of(Call& call, std::uint64_t max_limit, std::uint64_t default_limit,
                        std::function<bool(const keys::KeyInfo&)> include) {
  KEKD_ASSIGN_OR_RETURN(std::optional<std::uint64_t> limit,
                        integer_member(call.body, "Limit", 1, max_limit));
  KEKD_ASSIGN_OR_RETURN(std::optional<std::string> marker,
                        string_member(call.body, "Marker", 1, kMaxMarker));
  if (marker && !marker->starts_with(kMarkerPrefix)) {
    return KmsError("InvalidMarkerException", "The request contains an invalid Marker.");
  }
  const std::string after = marker ? marker->substr(kMarkerPrefix.size()) : "";
  Page page;
  const std::size_t max = limit.value_or(default_limit);
  for (keys::KeyInfo& key : call.services.keyring->list()) {
    if (marker && key.record.name <= after) continue;
    if (!visible(call, key) || !include(key)) continue;
    if (page.keys.size() == max) {
      page.next_marker = std::string(kMarkerPrefix) + page.keys.back().record.name;
      break;
    }
    page.keys.push_back(std::move(key));
  }
  return page;
}

Json paged(Json body, const Page& page) {
  body["Truncated"] = page.next_marker.has_value();
  if (page.next_marker) body["NextMarker"] = *page.next_marker;
  return body;
}

}  // namespace

KmsResult<Json> describe_key(Call& call) {
  KEKD_ASSIGN_OR_RETURN(std::string key_id,
                        required_string_member(call.body, "KeyId", 1, kMaxKeyId));
  KEKD_RETURN_IF_ERROR(common_members(call.body, nullptr));
  KEKD_ASSIGN_OR_RETURN(keys::KeyInfo key,
                        resolve_key(*call.services.keyring, call.services.kms, key_id));
  if (!visible(call, key)) {
    return KmsError(
        Error(Code::kPermissionDenied, "The client " + call.context.principal->client_id +
                                           " has no describe grant for key " + key.record.id));
  }
  return Json{{"KeyMetadata", key_metadata(call.services.kms, key)}};
}

KmsResult<Json> list_keys(Call& call) {
  // AWS's bounds: ListKeys 1..1000, 100 by default; ListAliases 1..100, 50 by default.
  KEKD_ASSIGN_OR_RETURN(Page page,
                        page_of(call, 1000, 100, [](const keys::KeyInfo&) { return true; }));
  Json keys = Json::array();
  for (const keys::KeyInfo& key : page.keys) {
    keys.push_back(
        {{"KeyId", key.record.id}, {"KeyArn", key_arn(call.services.kms, key.record.id)}});
  }
  return paged({{"Keys", std::move(keys)}}, page);
}

KmsResult<Json> list_aliases(Call& call) {
  KEKD_ASSIGN_OR_RETURN(std::optional<std::string> key_id,
                        string_member(call.body, "KeyId", 1, kMaxKeyId));
  std::optional<std::string> only;
  if (key_id) {
    KEKD_ASSIGN_OR_RETURN(keys::KeyInfo key,
                          resolve_key(*call.services.keyring, call.services.kms, *key_id));
    only = key.record.id;
  }
  KEKD_ASSIGN_OR_RETURN(Page page, page_of(call, 100, 50, [&](const keys::KeyInfo& key) {
                          return !only || key.record.id == *only;
                        }));
  Json aliases = Json::array();
  for (const keys::KeyInfo& key : page.keys) {
    aliases.push_back({{"AliasName", alias_name(key.record.name)},
                       {"AliasArn", alias_arn(call.services.kms, key.record.name)},
                       {"TargetKeyId", key.record.id},
                       {"CreationDate", epoch_seconds(key.record.created_at)},
                       {"LastUpdatedDate", epoch_seconds(key.record.created_at)}});
  }
  return paged({{"Aliases", std::move(aliases)}}, page);
}

}  // namespace kekd::api::kms
