// AWS Signature Version 4, as the KMS-compatible API checks it (DESIGN §6, §8): pure functions
// over an HttpRequest, with no HSM and no sockets.
//
// Security model:
//  - A request is accepted only if HMAC-SHA256 under the client's derived signing key, over the
//    canonical form of the request as received, equals the signature it carries. The canonical
//    form is rebuilt here from the request's own SignedHeaders; nothing the client computed is
//    trusted. The signatures are compared in constant time.
//  - The body is always signed: X-Amz-Content-SHA256, when sent, must be the SHA-256 of the body
//    received (so "UNSIGNED-PAYLOAD" is refused), and without it the hash is computed here.
//  - "host" must be signed, so a request signed for one endpoint does not verify at another.
//  - The signing time may differ from the server's clock by at most kMaxClockSkew either way. As at
//    AWS, a captured request could be replayed within that window: TLS is what keeps requests
//    from being captured.
//  - Only the Authorization header form is supported; presigned query-string authentication
//    (X-Amz-Algorithm=... in the URL) is refused as a missing token, so that no signature ever
//    travels in a URL that proxies and logs keep.
//  - A Refusal's message never contains the secret, a derived key, the expected signature or the
//    canonical request we computed (AWS returns the last two; with them a caller could tell which
//    part of a forged request was wrong). It may quote the client's own X-Amz-Date, and for an
//    Authorization header whose algorithm is AWS4-HMAC-SHA256 the header itself, which holds
//    only the access key id, the scope and the client's signature. Any other Authorization value
//    (a native "Bearer <id>.<secret>" token sent here by mistake) is never quoted.
//
// Canonical request (botocore's SigV4Auth and the JS SDK v3's SignatureV4, non-S3 rules):
//   METHOD '\n' URI '\n' QUERY '\n' (name ':' value '\n')* '\n' name(';'name)* '\n' payload-hash
//  - URI: the path as sent with dot segments and empty segments removed, then every byte outside
//    the RFC 3986 unreserved set and '/' percent-encoded. The path on the wire is already encoded,
//    so "%20" becomes "%2520": services other than S3 sign the path encoded twice. "" is "/".
//  - QUERY: the pairs split on '&' and on the first '=' (a name without '=' has an empty value),
//    each side percent-decoded and re-encoded with only unreserved bytes left bare, sorted by
//    name then value, joined as "name=value" with '&'. A '+' is a literal plus (RFC 3986, and
//    awscrt's signer), not a space: the SDKs always send a space as %20.
//  - Headers: each signed name, lower case, ':' and the value with leading and trailing
//    whitespace removed and each inner run of whitespace collapsed to one space. A header sent
//    twice reaches us as one value, its values joined with ',' as SigV4 signs them (server.cc).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "kekd/api/http_message.h"
#include "kekd/common/bytes.h"
#include "kekd/common/time.h"

namespace kekd::api::sigv4 {

inline constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256";
inline constexpr std::string_view kService = "kms";
inline constexpr std::string_view kTerminator = "aws4_request";
inline constexpr UnixMillis kMaxClockSkew = 5 * 60 * 1000;
inline constexpr std::size_t kMaxAuthorizationBytes = 4096;
inline constexpr std::size_t kMaxSignedHeaders = 64;

// Why a request's signature is refused; the KMS layer maps each to AWS's error type:
// MissingAuthenticationTokenException, IncompleteSignatureException, and
// InvalidSignatureException for the last two.
enum class Failure {
  kMissingAuthenticationToken,  // no Authorization header (or only presigned query parameters)
  kIncompleteSignature,         // an Authorization header or X-Amz-Date that does not parse
  kInvalidSignature,            // parses, but the scope, the body hash or the signature is wrong
  kSignatureExpired,            // X-Amz-Date further than kMaxClockSkew from the server's clock
};

struct Refusal {
  Failure failure;
  std::string message;  // AWS's wording where there is one
};

// The parsed "AWS4-HMAC-SHA256 Credential=<id>/<date>/<region>/<service>/aws4_request,
// SignedHeaders=<a;b;c>, Signature=<hex>" header and the X-Amz-Date it is bound to.
struct Authorization {
  std::string access_key_id;
  std::string date;  // YYYYMMDD, equal to the first eight characters of amz_date
  std::string region;
  std::string service;
  std::vector<std::string> signed_headers;  // lower case, strictly ascending, "host" among them
  std::string signature;                    // as sent; checked (length too) only by verify()
  std::string amz_date;                     // X-Amz-Date: YYYYMMDD'T'HHMMSS'Z'
  UnixMillis signed_at = 0;                 // amz_date as a time

  // "<date>/<region>/<service>/aws4_request"
  std::string scope() const;
};

// Parses the Authorization and X-Amz-Date headers. Refuses, with AWS's classification:
// no header (kMissingAuthenticationToken); a header over kMaxAuthorizationBytes, another algorithm,
// a missing Credential/SignedHeaders/Signature, a credential without exactly five parts, more than
// kMaxSignedHeaders or malformed, unsorted or repeated signed header names, a missing or malformed
// X-Amz-Date (kIncompleteSignature); a scope terminator other than aws4_request, a scope date other
// than X-Amz-Date's, "host" not signed (kInvalidSignature).
std::variant<Authorization, Refusal> parse(const HttpRequest& request);

// The canonical request described above, over the headers named (in that order, which parse()
// guarantees is sorted). A named header absent from the request contributes an empty value;
// verify() refuses such requests before it gets here.
std::string canonical_request(const HttpRequest& request,
                              const std::vector<std::string>& signed_headers,
                              std::string_view payload_hash_hex);

// "AWS4-HMAC-SHA256\n<amz_date>\n<scope>\n<hex SHA-256 of canonical_request>"
std::string string_to_sign(std::string_view amz_date, std::string_view scope,
                           std::string_view canonical_request);

// HMAC-SHA256 chained over date, region, service and "aws4_request", from "AWS4" + secret. It
// depends only on the secret and the scope, so a caller may cache it per (client, date, region).
SecretBytes signing_key(const SecretBytes& secret, std::string_view date, std::string_view region,
                        std::string_view service);

// Lower-case hex HMAC-SHA256 of string_to_sign under signing_key.
std::string signature(const SecretBytes& signing_key, std::string_view string_to_sign);

// Lower-case hex SHA-256, the payload hash of a body.
std::string hex_sha256(std::string_view data);

// The complete check of a request that parse() accepted as `auth`, given the signing key derived
// for auth's date, region and service from the secret of the client auth.access_key_id names.
// Refuses, in this order: a signing time further than kMaxClockSkew from now (kSignatureExpired);
// a service other than kService or a region other than expected_region; a signed header missing
// from the request; an X-Amz-Content-SHA256 that is not the body's hash; a signature that differs
// (all kInvalidSignature). std::nullopt means the request is authentic. The first two checks do not
// use the key, so a caller may refuse a stale or foreign scope (passing an empty key) before it
// fetches any secret.
std::optional<Refusal> verify(const HttpRequest& request, const Authorization& auth,
                              const SecretBytes& signing_key_for_scope,
                              std::string_view expected_region, UnixMillis now);

}  // namespace kekd::api::sigv4
