// KeyId as the KMS API takes it, and the ARNs it answers with. kekd's key names are aliases
// ("alias/<name>"), its key UUIDs are key ids: a KEK's UUID never changes, so the ARN a client
// stored keeps naming the same key through every rotation.
#include "kms.h"

namespace kekd::api::kms {
namespace {

constexpr std::string_view kAliasPrefix = "alias/";

KmsError not_found(const std::string& key_id) {
  // AWS's wording, quoting the KeyId (at most 2048 bytes, checked by the caller).
  if (key_id.find("alias/") != std::string::npos) {
    return KmsError(Error(Code::kNotFound, "Alias '" + key_id + "' is not found."));
  }
  return KmsError(Error(Code::kNotFound, "Key '" + key_id + "' does not exist"));
}

}  // namespace

std::string key_arn(const KmsIdentity& scope, const std::string& key_id) {
  return "arn:aws:kms:" + scope.region + ":" + scope.account + ":key/" + key_id;
}

std::string alias_name(const std::string& key_name) { return std::string(kAliasPrefix) + key_name; }

std::string alias_arn(const KmsIdentity& scope, const std::string& key_name) {
  return "arn:aws:kms:" + scope.region + ":" + scope.account + ":" + alias_name(key_name);
}

KmsResult<keys::KeyInfo> resolve_key(const keys::Keyring& keyring, const KmsIdentity& scope,
                                     const std::string& key_id) {
  std::string_view id = key_id;
  // An ARN of this region and account is the same as the resource part after it; an ARN of any
  // other names a key kekd does not hold.
  const std::string arn_prefix = "arn:aws:kms:" + scope.region + ":" + scope.account + ":";
  if (id.starts_with("arn:")) {
    if (!id.starts_with(arn_prefix)) return not_found(key_id);
    id.remove_prefix(arn_prefix.size());
    if (id.starts_with("key/")) {
      id.remove_prefix(4);
    } else if (!id.starts_with(kAliasPrefix)) {
      return not_found(key_id);
    }
  }
  Result<keys::KeyInfo> info = id.starts_with(kAliasPrefix)
                                   ? keyring.describe(id.substr(kAliasPrefix.size()))
                                   : keyring.describe_id(id);
  if (!info.ok()) {
    if (info.error().code() == Code::kNotFound) return not_found(key_id);
    return info.error();
  }
  return std::move(*info);
}

}  // namespace kekd::api::kms
