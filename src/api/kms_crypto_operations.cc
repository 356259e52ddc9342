// The cryptographic operations of the KMS API: Encrypt, Decrypt, ReEncrypt, GenerateDataKey,
// GenerateDataKeyWithoutPlaintext, GenerateRandom. Each is the native operation of the same grant
// (Encrypt = wrap, Decrypt = unwrap, ReEncrypt = rewrap, GenerateDataKey* = datakey) on the same
// keyring, so CiphertextBlob is exactly the native ciphertext (DESIGN §4), and each leaves the
// same audit record as its native twin.
#include "kekd/keys/ciphertext.h"
#include "kms.h"

namespace kekd::api::kms {
namespace {

constexpr std::size_t kMaxKeyId = 2048;
constexpr std::size_t kMaxPlaintext = 4096;
constexpr std::size_t kMaxCiphertextBlob = 6144;
constexpr const char* kAlgorithm = "SYMMETRIC_DEFAULT";

// Records one key operation, as the native API does for each item, and counts it.
template <typename R>
void account(Call& call, Operation operation, const std::string& key,
             std::optional<std::uint32_t> version, const R& result,
             std::optional<std::string> subject = std::nullopt) {
  const std::string_view name = operation_name(operation);
  call.services.metrics->observe_key_operation(name,
                                               result.ok() ? "ok" : code_name(result.error().code));
  audit::AuditEvent event = audit_event(call.context, "key." + std::string(name));
  event.key = key;
  event.version = version;
  event.subject = std::move(subject);
  if (!result.ok()) event.error = result.error().code;
  (void)record_audit(call.services, call.context, std::move(event));
}

// The operation is allowed on the key, or AccessDeniedException (recorded like any refusal). The
// message quotes what the caller named, never the key's UUID or name: a client learns nothing
// about keys it holds no grant for.
KmsResult<bool> authorize(Call& call, const std::string& key_name, Operation operation,
                          const std::string& named_as) {
  if (allows(call.context.principal->grants, key_name, operation)) return true;
  KmsResult<bool> denied = KmsError(Error(
      Code::kPermissionDenied, "The client " + call.context.principal->client_id +
                                   " is not authorized to perform " +
                                   std::string(operation_name(operation)) + " on " + named_as));
  account(call, operation, key_name, std::nullopt, denied);
  return denied;
}

KmsError dry_run() {
  KmsError error("DryRunOperationException",
                 "The request would have succeeded, but the DryRun option is set.");
  error.code = Code::kFailedPrecondition;
  return error;
}

// A Result of the keyring as a KmsResult, for account() and KEKD_ASSIGN_OR_RETURN alike.
template <typename T>
KmsResult<T> kms_result(Result<T> result) {
  if (!result.ok()) return KmsError(result.error());
  return std::move(*result);
}

KmsResult<SecretBytes> required_blob(const Json& body, const char* member, std::size_t max) {
  KEKD_ASSIGN_OR_RETURN(std::optional<SecretBytes> blob, blob_member(body, member, 1, max));
  if (!blob) {
    return validation(std::string("1 validation error detected: Value at '") + member +
                      "' failed to satisfy constraint: Member must not be null");
  }
  return std::move(*blob);
}

// The key a ciphertext names, checked against the KeyId the caller gave for it, if any. A
// ciphertext that does not parse, or names a key kekd does not hold, is InvalidCiphertext; a
// KeyId of another key is IncorrectKeyException, as AWS answers.
KmsResult<keys::KeyInfo> key_of_ciphertext(Call& call, ByteView blob, const char* key_id_member,
                                           Operation operation) {
  Result<keys::Ciphertext> parsed = keys::parse_ciphertext(blob);
  if (!parsed.ok()) return KmsError(parsed.error());
  // The grant first: whether the named key exists is not for a client without one to learn.
  KEKD_RETURN_IF_ERROR(authorize(call, parsed->key_name, operation, "the ciphertext's key"));
  Result<keys::KeyInfo> key = call.services.keyring->describe(parsed->key_name);
  if (!key.ok()) {
    return KmsError(key.error().code() == Code::kNotFound ? keys::invalid_ciphertext()
                                                          : key.error());
  }
  KEKD_ASSIGN_OR_RETURN(std::optional<std::string> key_id,
                        string_member(call.body, key_id_member, 1, kMaxKeyId));
  if (key_id) {
    KEKD_ASSIGN_OR_RETURN(keys::KeyInfo named,
                          resolve_key(*call.services.keyring, call.services.kms, *key_id));
    if (named.record.id != key->record.id) {
      KmsError error("IncorrectKeyException",
                     "The key ID in the request does not identify a KMS key that can perform "
                     "this operation.");
      error.code = Code::kInvalidCiphertext;
      return error;
    }
  }
  return std::move(*key);
}

KmsResult<Json> data_key(Call& call, bool with_plaintext) {
  KEKD_ASSIGN_OR_RETURN(std::string key_id,
                        required_string_member(call.body, "KeyId", 1, kMaxKeyId));
  KEKD_ASSIGN_OR_RETURN(std::optional<std::uint64_t> number,
                        integer_member(call.body, "NumberOfBytes", 1, keys::kMaxDataKeyBytes));
  KEKD_ASSIGN_OR_RETURN(std::optional<std::string> spec,
                        string_member(call.body, "KeySpec", 1, 16));
  if (number && spec) {
    return validation("Please specify either number of bytes or key spec, not both.");
  }
  if (!number && !spec) return validation("Please specify either number of bytes or key spec.");
  if (spec) {
    if (*spec != "AES_128" && *spec != "AES_256") {
      return validation(
          "1 validation error detected: Value at 'keySpec' failed to satisfy constraint: Member "
          "must satisfy enum value set: [AES_256, AES_128]");
    }
    number = *spec == "AES_128" ? 16 : 32;
  }
  KEKD_ASSIGN_OR_RETURN(keys::EncryptionContext context,
                        context_member(call.body, "EncryptionContext"));
  KEKD_ASSIGN_OR_RETURN(bool dry, common_members(call.body, nullptr));
  KEKD_ASSIGN_OR_RETURN(keys::KeyInfo key,
                        resolve_key(*call.services.keyring, call.services.kms, key_id));
  KEKD_RETURN_IF_ERROR(authorize(call, key.record.name, Operation::kDatakey, key_id));
  if (dry) return dry_run();
  KmsResult<keys::DataKey> dk = kms_result(
      call.services.keyring->generate_data_key(key.record.name, *number, context, with_plaintext));
  account(call, Operation::kDatakey, key.record.name,
          dk.ok() ? std::optional(dk->version) : std::nullopt, dk);
  KEKD_ASSIGN_OR_RETURN(keys::DataKey data_key, std::move(dk));
  Json out = {{"CiphertextBlob", encode_base64(data_key.ciphertext)},
              {"KeyId", key_arn(call.services.kms, key.record.id)}};
  if (data_key.plaintext) out["Plaintext"] = encode_base64(*data_key.plaintext);
  return out;
}

}  // namespace

KmsResult<Json> encrypt(Call& call) {
  KEKD_ASSIGN_OR_RETURN(std::string key_id,
                        required_string_member(call.body, "KeyId", 1, kMaxKeyId));
  KEKD_ASSIGN_OR_RETURN(SecretBytes plaintext,
                        required_blob(call.body, "Plaintext", kMaxPlaintext));
  KEKD_ASSIGN_OR_RETURN(keys::EncryptionContext context,
                        context_member(call.body, "EncryptionContext"));
  KEKD_ASSIGN_OR_RETURN(bool dry, common_members(call.body, "EncryptionAlgorithm"));
  KEKD_ASSIGN_OR_RETURN(keys::KeyInfo key,
                        resolve_key(*call.services.keyring, call.services.kms, key_id));
  KEKD_RETURN_IF_ERROR(authorize(call, key.record.name, Operation::kWrap, key_id));
  if (dry) return dry_run();
  KmsResult<keys::Wrapped> w =
      kms_result(call.services.keyring->wrap(key.record.name, plaintext, context));
  account(call, Operation::kWrap, key.record.name,
          w.ok() ? std::optional(w->version) : std::nullopt, w);
  KEKD_ASSIGN_OR_RETURN(keys::Wrapped wrapped, std::move(w));
  return Json{{"CiphertextBlob", encode_base64(wrapped.ciphertext)},
              {"KeyId", key_arn(call.services.kms, key.record.id)},
              {"EncryptionAlgorithm", kAlgorithm}};
}

KmsResult<Json> decrypt(Call& call) {
  KEKD_ASSIGN_OR_RETURN(SecretBytes blob,
                        required_blob(call.body, "CiphertextBlob", kMaxCiphertextBlob));
  KEKD_ASSIGN_OR_RETURN(keys::EncryptionContext context,
                        context_member(call.body, "EncryptionContext"));
  KEKD_ASSIGN_OR_RETURN(bool dry, common_members(call.body, "EncryptionAlgorithm"));
  KEKD_ASSIGN_OR_RETURN(keys::KeyInfo key,
                        key_of_ciphertext(call, blob, "KeyId", Operation::kUnwrap));
  if (dry) return dry_run();
  KmsResult<keys::Unwrapped> u =
      kms_result(call.services.keyring->unwrap(key.record.name, blob, context));
  account(call, Operation::kUnwrap, key.record.name,
          u.ok() ? std::optional(u->version) : std::nullopt, u);
  KEKD_ASSIGN_OR_RETURN(keys::Unwrapped unwrapped, std::move(u));
  return Json{{"KeyId", key_arn(call.services.kms, key.record.id)},
              {"Plaintext", encode_base64(unwrapped.plaintext)},
              {"EncryptionAlgorithm", kAlgorithm}};
}

KmsResult<Json> re_encrypt(Call& call) {
  KEKD_ASSIGN_OR_RETURN(SecretBytes blob,
                        required_blob(call.body, "CiphertextBlob", kMaxCiphertextBlob));
  KEKD_ASSIGN_OR_RETURN(std::string destination_id,
                        required_string_member(call.body, "DestinationKeyId", 1, kMaxKeyId));
  KEKD_ASSIGN_OR_RETURN(keys::EncryptionContext source_context,
                        context_member(call.body, "SourceEncryptionContext"));
  KEKD_ASSIGN_OR_RETURN(keys::EncryptionContext destination_context,
                        context_member(call.body, "DestinationEncryptionContext"));
  KEKD_ASSIGN_OR_RETURN(bool dry, common_members(call.body, "SourceEncryptionAlgorithm"));
  KEKD_RETURN_IF_ERROR(common_members(call.body, "DestinationEncryptionAlgorithm"));
  KEKD_ASSIGN_OR_RETURN(keys::KeyInfo source,
                        key_of_ciphertext(call, blob, "SourceKeyId", Operation::kRewrap));
  KEKD_ASSIGN_OR_RETURN(keys::KeyInfo destination,
                        resolve_key(*call.services.keyring, call.services.kms, destination_id));
  KEKD_RETURN_IF_ERROR(
      authorize(call, destination.record.name, Operation::kRewrap, destination_id));
  const bool same =
      source.record.name == destination.record.name && source_context == destination_context;
  // Under the same key and context this is kekd's rewrap. To another key or context it opens the
  // data key under one and wraps it under the other, so it needs what those need too: else rewrap
  // on two keys would be unwrap across keys (move a blob to a key one may decrypt with).
  if (!same) {
    KEKD_RETURN_IF_ERROR(
        authorize(call, source.record.name, Operation::kUnwrap, "the ciphertext's key"));
    KEKD_RETURN_IF_ERROR(
        authorize(call, destination.record.name, Operation::kWrap, destination_id));
  }
  if (dry) return dry_run();
  keys::Keyring& keyring = *call.services.keyring;
  // Otherwise the DEK is opened and wrapped again inside kekd: it is never returned, and its
  // buffer wipes itself.
  KmsResult<keys::Wrapped> w = [&]() -> KmsResult<keys::Wrapped> {
    if (same) return kms_result(keyring.rewrap(source.record.name, blob, source_context));
    KEKD_ASSIGN_OR_RETURN(keys::Unwrapped opened,
                          kms_result(keyring.unwrap(source.record.name, blob, source_context)));
    return kms_result(keyring.wrap(destination.record.name, opened.plaintext, destination_context));
  }();
  std::optional<std::string> subject;
  if (source.record.name != destination.record.name) subject = "from key " + source.record.name;
  account(call, Operation::kRewrap, destination.record.name,
          w.ok() ? std::optional(w->version) : std::nullopt, w, std::move(subject));
  KEKD_ASSIGN_OR_RETURN(keys::Wrapped wrapped, std::move(w));
  return Json{{"CiphertextBlob", encode_base64(wrapped.ciphertext)},
              {"SourceKeyId", key_arn(call.services.kms, source.record.id)},
              {"KeyId", key_arn(call.services.kms, destination.record.id)},
              {"SourceEncryptionAlgorithm", kAlgorithm},
              {"DestinationEncryptionAlgorithm", kAlgorithm}};
}

KmsResult<Json> generate_data_key(Call& call) { return data_key(call, true); }

KmsResult<Json> generate_data_key_without_plaintext(Call& call) { return data_key(call, false); }

KmsResult<Json> generate_random(Call& call) {
  KEKD_ASSIGN_OR_RETURN(std::optional<std::uint64_t> number,
                        integer_member(call.body, "NumberOfBytes", 1, keys::kMaxDataKeyBytes));
  if (!number) {
    return validation(
        "1 validation error detected: Value at 'numberOfBytes' failed to satisfy constraint: "
        "Member must not be null");
  }
  if (call.body.contains("CustomKeyStoreId") || call.body.contains("Recipient")) {
    return unsupported("kekd has no custom key stores and no Nitro Enclaves attestation");
  }
  // Not tied to a key, but not for everyone either: a client that may make data keys may ask for
  // random bytes; a client with no grants can do nothing (DESIGN §6).
  const Principal& p = *call.context.principal;
  if (!p.admin && !allows_on_any_key(p.grants, Operation::kDatakey)) {
    return KmsError(Error(Code::kPermissionDenied, "The client " + p.client_id +
                                                       " holds no datakey grant, which "
                                                       "GenerateRandom needs"));
  }
  KEKD_ASSIGN_OR_RETURN(SecretBytes random, call.services.hsm->random(*number));
  return Json{{"Plaintext", encode_base64(random)}};
}

}  // namespace kekd::api::kms
