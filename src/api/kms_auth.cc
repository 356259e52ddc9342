// Signature V4 for the KMS API (DESIGN §6): the access key id is a kekd client id and the secret
// access key its secret. The check itself is sigv4.h's; here it meets the credentials and AWS's
// error types.
#include "kekd/api/sigv4.h"
#include "kms.h"

namespace kekd::api::kms {
namespace {

KmsError refused(const sigv4::Refusal& refusal) {
  const char* type = "InvalidSignatureException";
  switch (refusal.failure) {
    case sigv4::Failure::kMissingAuthenticationToken:
      type = "MissingAuthenticationTokenException";
      break;
    case sigv4::Failure::kIncompleteSignature:
      type = "IncompleteSignatureException";
      break;
    case sigv4::Failure::kInvalidSignature:
    case sigv4::Failure::kSignatureExpired:
      break;
  }
  KmsError error(type, refusal.message);
  error.code = Code::kUnauthenticated;
  return error;
}

}  // namespace

KmsResult<Principal> authenticate(const ApiServices& s, const HttpRequest& request,
                                  std::string& claimed) {
  std::variant<sigv4::Authorization, sigv4::Refusal> parsed = sigv4::parse(request);
  if (const auto* refusal = std::get_if<sigv4::Refusal>(&parsed)) return refused(*refusal);
  const sigv4::Authorization& auth = std::get<sigv4::Authorization>(parsed);
  if (Credentials::has_client_id_shape(auth.access_key_id)) claimed = auth.access_key_id;
  const UnixMillis now = now_millis();

  // What the header alone shows to be wrong (another region or service, a stale date) is refused
  // before the client's secret is fetched: a forged scope must not cost an HSM call, nor evict
  // the client's cached signing key. verify() refuses these before it uses the key.
  const UnixMillis skew = auth.signed_at > now ? auth.signed_at - now : now - auth.signed_at;
  if (auth.region != s.kms.region || auth.service != sigv4::kService ||
      skew > sigv4::kMaxClockSkew) {
    if (std::optional<sigv4::Refusal> r = sigv4::verify(request, auth, {}, s.kms.region, now)) {
      return refused(*r);
    }
  }
  Result<Credentials::SigningIdentity> identity =
      s.credentials->signing_identity(auth.access_key_id, auth.date, auth.region, auth.service);
  if (!identity.ok()) {
    if (identity.error().code() != Code::kUnauthenticated) return identity.error();
    // AWS's words for an access key id it does not know; the same whether the id is unknown or
    // deleted, like the native API's one 401.
    KmsError error("UnrecognizedClientException",
                   "The security token included in the request is invalid.");
    error.code = Code::kUnauthenticated;
    return error;
  }
  if (std::optional<sigv4::Refusal> r =
          sigv4::verify(request, auth, identity->signing_key, s.kms.region, now)) {
    return refused(*r);
  }
  return std::move(identity->principal);
}

}  // namespace kekd::api::kms
