// The AWS KMS-compatible API (DESIGN §8, docs/aws-kms.md): `POST /` with
// `X-Amz-Target: TrentService.<Operation>`, JSON 1.1 bodies, Signature V4, and AWS's error types.
// It is another face of the same keyring: the same keys, grants, ciphertexts and audit records as
// the native API, so a ciphertext made through one opens through the other.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

#include "routes.h"

namespace kekd::api::kms {

// An AWS KMS error: `{"__type": type, "message": message}` with its HTTP status.
struct KmsError {
  std::string type;
  std::string message;
  int status = 400;
  // The KMS type and status the one error table (errors.cc) gives the code.
  KmsError(const Error& error);  // NOLINT: implicit, so that KMS_ASSIGN_OR_RETURN takes both
  KmsError(std::string type, std::string message, int status = 400)
      : type(std::move(type)), message(std::move(message)), status(status) {}
  // The kekd code this error is recorded under in the audit log and metrics.
  Code code = Code::kInvalidArgument;
};

// Errors that are AWS's own and have no kekd code of their own.
KmsError validation(std::string message);     // ValidationException
KmsError serialization(std::string message);  // SerializationException
KmsError unsupported(std::string message);    // UnsupportedOperationException

// A value or a KmsError. A Result<T> of the domain converts into it through the error table, so
// KEKD_ASSIGN_OR_RETURN and KEKD_RETURN_IF_ERROR work on both inside the KMS operations.
template <typename T>
using KmsResult = Result<T, KmsError>;

// The response to a failed request: the JSON body, the status, x-amzn-RequestId.
HttpResponse error_response(const KmsError& error, const std::string& request_id);
HttpResponse json_answer(const Json& body, const std::string& request_id);

// ---- Key identifiers and ARNs (kms_key_id.cc) ----

std::string key_arn(const KmsIdentity& scope, const std::string& key_id);
std::string alias_name(const std::string& key_name);  // "alias/<name>"
std::string alias_arn(const KmsIdentity& scope, const std::string& key_name);

// The key a KeyId names: its UUID, "alias/<name>", the key ARN or the alias ARN (of this
// region and account). NotFoundException otherwise, as AWS answers an unknown key.
KmsResult<keys::KeyInfo> resolve_key(const keys::Keyring& keyring, const KmsIdentity& scope,
                                     const std::string& key_id);

// ---- Authentication (kms_auth.cc) ----

// Checks the request's Signature V4 and returns the client it was signed by. On a refusal,
// `claimed` is the access key id the request names when it has the shape of a client id (for
// the audit record), else "".
KmsResult<Principal> authenticate(const ApiServices& s, const HttpRequest& request,
                                  std::string& claimed);

// Answers a KMS request (`POST /`): Api::handle sends every such request here.
HttpResponse handle(const ApiServices& s, Api::Context& c);

// ---- Request members (kms_members.cc) ----

// The body as a JSON object (SerializationException otherwise).
KmsResult<Json> parse_body(std::string_view body);
// A string member, std::nullopt when absent; SerializationException when it is not a string,
// ValidationException when its length is outside min..max.
KmsResult<std::optional<std::string>> string_member(const Json& body, const char* member,
                                                    std::size_t min, std::size_t max);
KmsResult<std::string> required_string_member(const Json& body, const char* member, std::size_t min,
                                              std::size_t max);
// A blob member (base64 in JSON), with its decoded length checked against min..max.
KmsResult<std::optional<SecretBytes>> blob_member(const Json& body, const char* member,
                                                  std::size_t min, std::size_t max);
KmsResult<std::optional<std::uint64_t>> integer_member(const Json& body, const char* member,
                                                       std::uint64_t min, std::uint64_t max);
KmsResult<keys::EncryptionContext> context_member(const Json& body, const char* member);
// Checks what every cryptographic operation may carry and kekd does not use: GrantTokens,
// EncryptionAlgorithm (only SYMMETRIC_DEFAULT), DryRun (DryRunOperationException once the
// request is authorised), Recipient (unsupported).
KmsResult<bool> common_members(const Json& body, const char* algorithm_member);

// ---- Operations (kms_crypto_operations.cc, kms_catalog_operations.cc) ----

struct Call {
  const ApiServices& services;
  Api::Context& context;
  const Json& body;
};

using Handler = KmsResult<Json> (*)(Call&);

KmsResult<Json> encrypt(Call& call);
KmsResult<Json> decrypt(Call& call);
KmsResult<Json> re_encrypt(Call& call);
KmsResult<Json> generate_data_key(Call& call);
KmsResult<Json> generate_data_key_without_plaintext(Call& call);
KmsResult<Json> generate_random(Call& call);
KmsResult<Json> describe_key(Call& call);
KmsResult<Json> list_keys(Call& call);
KmsResult<Json> list_aliases(Call& call);

}  // namespace kekd::api::kms
