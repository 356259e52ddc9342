// The KMS API's one endpoint: `POST /` with `X-Amz-Target: TrentService.<Operation>`. The
// request is authenticated (Signature V4) before anything else, so that an anonymous caller
// learns nothing, not even which operations exist; then the target picks the operation.
#include <array>

#include "kms.h"

namespace kekd::api::kms {
namespace {

constexpr std::string_view kTargetPrefix = "TrentService.";

struct Target {
  std::string_view name;
  Handler handler;
  const char* action;  // the audit action of a refused request, or nullptr for none
};

constexpr std::array<Target, 9> kTargets = {{
    {"Encrypt", encrypt, "key.wrap"},
    {"Decrypt", decrypt, "key.unwrap"},
    {"ReEncrypt", re_encrypt, "key.rewrap"},
    {"GenerateDataKey", generate_data_key, "key.datakey"},
    {"GenerateDataKeyWithoutPlaintext", generate_data_key_without_plaintext, "key.datakey"},
    {"GenerateRandom", generate_random, nullptr},
    {"DescribeKey", describe_key, nullptr},
    {"ListKeys", list_keys, nullptr},
    {"ListAliases", list_aliases, nullptr},
}};

// What changes keys in AWS KMS. In kekd a KEK is created, rotated, disabled and destroyed only by
// an M-of-N ceremony, never by one caller.
constexpr std::string_view kLifecycle[] = {
    "CreateKey",         "ScheduleKeyDeletion", "CancelKeyDeletion",    "DisableKey",
    "EnableKey",         "CreateAlias",         "DeleteAlias",          "UpdateAlias",
    "EnableKeyRotation", "DisableKeyRotation",  "RotateKeyOnDemand",    "ImportKeyMaterial",
    "ReplicateKey",      "UpdatePrimaryRegion", "UpdateKeyDescription", "PutKeyPolicy",
    "CreateGrant",       "RetireGrant",         "RevokeGrant"};

// The rest of AWS KMS's operations: known, not offered by kekd.
constexpr std::string_view kOther[] = {"ConnectCustomKeyStore",
                                       "CreateCustomKeyStore",
                                       "DeleteCustomKeyStore",
                                       "DeleteImportedKeyMaterial",
                                       "DeriveSharedSecret",
                                       "DescribeCustomKeyStores",
                                       "DisconnectCustomKeyStore",
                                       "GenerateDataKeyPair",
                                       "GenerateDataKeyPairWithoutPlaintext",
                                       "GenerateMac",
                                       "GetKeyPolicy",
                                       "GetKeyRotationStatus",
                                       "GetParametersForImport",
                                       "GetPublicKey",
                                       "ListGrants",
                                       "ListKeyPolicies",
                                       "ListKeyRotations",
                                       "ListResourceTags",
                                       "ListRetirableGrants",
                                       "Sign",
                                       "TagResource",
                                       "UntagResource",
                                       "UpdateCustomKeyStore",
                                       "Verify",
                                       "VerifyMac"};

template <std::size_t N>
bool contains(const std::string_view (&names)[N], std::string_view name) {
  for (std::string_view n : names) {
    if (n == name) return true;
  }
  return false;
}

KmsError unknown_operation() {
  KmsError error("UnknownOperationException", "");
  error.code = Code::kNotFound;
  return error;
}

}  // namespace

HttpResponse handle(const ApiServices& s, Api::Context& c) {
  const std::string& header = c.request.header("x-amz-target");
  const Target* target = nullptr;
  std::string_view operation;
  if (std::string_view(header).starts_with(kTargetPrefix)) {
    operation = std::string_view(header).substr(kTargetPrefix.size());
    for (const Target& t : kTargets) {
      if (t.name == operation) target = &t;
    }
  }
  // Metrics and audit name only operations kekd knows: the header is anyone's input.
  const std::string route = target != nullptr ? "/ " + std::string(target->name) : "/";

  KmsResult<Json> result = [&]() -> KmsResult<Json> {
    std::string claimed;
    KmsResult<Principal> principal = authenticate(s, c.request, claimed);
    if (!principal.ok()) {
      // A refused signature is an auth.failure; an HSM that cannot open the secret is not.
      if (principal.error().code == Code::kUnauthenticated) {
        audit::AuditEvent event = audit_event(c, "auth.failure");
        event.principal = claimed;
        event.subject = "POST " + route;
        event.error = principal.error().code;
        (void)record_audit(s, c, std::move(event));
      }
      return principal.error();
    }
    c.principal = std::move(*principal);
    if (target == nullptr) {
      if (contains(kLifecycle, operation)) {
        return unsupported(std::string(operation) +
                           " is not available: in kekd keys are created, rotated, disabled and "
                           "destroyed only by an M-of-N operator ceremony (kekctl ceremony "
                           "propose; docs/ceremony.md)");
      }
      if (contains(kOther, operation)) {
        return unsupported(std::string(operation) +
                           " is not supported by kekd (docs/aws-kms.md lists what is)");
      }
      return unknown_operation();
    }
    KEKD_ASSIGN_OR_RETURN(Json body, parse_body(c.request.body));
    Call call{s, c, body};
    return target->handler(call);
  }();

  if (!result.ok()) {
    const Code code = result.error().code;
    if (code == Code::kUnauthenticated || code == Code::kPermissionDenied) {
      s.metrics->observe_auth_failure(code_name(code));
    }
    // A refusal the operation did not record itself (a body that does not parse, an unknown key)
    // is still one refused operation in the log; a refused describe or list is an auth.failure.
    // A dry run did nothing and is not recorded (DryRunOperationException is its success).
    if (!c.audited && target != nullptr && result.error().type != "DryRunOperationException") {
      const char* action = target->action;
      if (action == nullptr &&
          (code == Code::kUnauthenticated || code == Code::kPermissionDenied)) {
        action = "auth.failure";
      }
      if (action != nullptr) {
        audit::AuditEvent event = audit_event(c, action);
        if (action == std::string_view("auth.failure")) event.subject = "POST " + route;
        event.error = code;
        (void)record_audit(s, c, std::move(event));
      }
    }
  }
  HttpResponse response = result.ok() ? json_answer(*result, c.request.request_id)
                                      : error_response(result.error(), c.request.request_id);
  response.route = route;
  return response;
}

}  // namespace kekd::api::kms
