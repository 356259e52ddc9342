// Parsing the SigV4 Authorization header and verifying a request (include/kekd/api/sigv4.h).
//
// Which failure is which, and the messages, follow what AWS's JSON services (the "coral" stack that
// KMS shares with DynamoDB) answer, as recorded by dynalite: a header that does not parse is
// IncompleteSignatureException; a scope that parses but names the wrong date, terminator, region
// or service, an unsigned "host", and a wrong signature are InvalidSignatureException.
#include "kekd/api/sigv4.h"

#include <botan/mem_ops.h>

#include <algorithm>
#include <cstdint>
#include <utility>

namespace kekd::api::sigv4 {
namespace {

constexpr std::string_view kMismatch =
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details.";

Refusal incomplete(std::string message) {
  return Refusal{Failure::kIncompleteSignature, std::move(message)};
}

Refusal invalid(std::string message) {
  while (!message.empty() && message.back() == ' ') message.pop_back();
  return Refusal{Failure::kInvalidSignature, std::move(message)};
}

std::string_view trimmed(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Client-supplied text quoted in a message, bounded so that a message stays a message.
std::string clip(std::string_view s) {
  constexpr std::size_t kMax = 128;
  return s.size() <= kMax ? std::string(s) : std::string(s.substr(0, kMax)) + "...";
}

std::vector<std::string_view> split(std::string_view s, char separator) {
  std::vector<std::string_view> parts;
  for (std::size_t start = 0;;) {
    std::size_t end = s.find(separator, start);
    parts.push_back(s.substr(start, end - start));
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

bool presigned(std::string_view target) {
  std::size_t question = target.find('?');
  if (question == std::string_view::npos) return false;
  for (std::string_view piece : split(target.substr(question + 1), '&')) {
    if (piece.starts_with("X-Amz-Algorithm=") || piece.starts_with("X-Amz-Signature=")) return true;
  }
  return false;
}

// YYYYMMDD'T'HHMMSS'Z', a real calendar time.
std::optional<UnixMillis> parse_amz_date(std::string_view s) {
  if (s.size() != 16 || s[8] != 'T' || s[15] != 'Z') return std::nullopt;
  for (std::size_t i = 0; i < 15; ++i) {
    if (i != 8 && (s[i] < '0' || s[i] > '9')) return std::nullopt;
  }
  std::string rfc3339 = std::string(s.substr(0, 4)) + "-" + std::string(s.substr(4, 2)) + "-" +
                        std::string(s.substr(6, 2)) + "T" + std::string(s.substr(9, 2)) + ":" +
                        std::string(s.substr(11, 2)) + ":" + std::string(s.substr(13, 2)) + "Z";
  return parse_rfc3339(rfc3339);
}

std::string format_amz_date(UnixMillis t) {
  std::string out;
  for (char c : format_rfc3339(t)) {
    if (c != '-' && c != ':') out.push_back(c);
  }
  return out;
}

// RFC 9110 token characters, lower case only: SigV4 signs lower-cased names.
bool valid_header_name(std::string_view name) {
  static constexpr std::string_view kSymbols = "!#$%&'*+-.^_`|~";
  if (name.empty()) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           kSymbols.find(c) != std::string_view::npos;
  });
}

}  // namespace

std::string Authorization::scope() const {
  return date + "/" + region + "/" + service + "/" + std::string(kTerminator);
}

std::variant<Authorization, Refusal> parse(const HttpRequest& request) {
  auto found = request.headers.find("authorization");
  if (found == request.headers.end() || trimmed(found->second).empty()) {
    if (presigned(request.target)) {
      return Refusal{Failure::kMissingAuthenticationToken,
                     "Request is missing Authentication Token: presigned query-string "
                     "authentication (X-Amz-Algorithm in the URL) is not supported; sign the "
                     "Authorization header instead"};
    }
    return Refusal{Failure::kMissingAuthenticationToken, "Request is missing Authentication Token"};
  }
  const std::string& header = found->second;
  if (header.size() > kMaxAuthorizationBytes) {
    return incomplete("Authorization header is longer than " +
                      std::to_string(kMaxAuthorizationBytes) + " bytes.");
  }
  std::string_view rest = trimmed(header);
  std::size_t space = std::min(rest.find_first_of(" \t"), rest.size());
  std::string_view algorithm = rest.substr(0, space);
  if (algorithm != kAlgorithm) {
    if (algorithm.starts_with("AWS4-")) {
      return incomplete("Unsupported AWS 'algorithm': '" + clip(algorithm) +
                        "' (only AWS4-HMAC-SHA256 for now).");
    }
    // Not SigV4 at all: perhaps a native "Bearer <id>.<secret>" token, which must not be quoted.
    return incomplete(
        "Authorization header requires 'Credential' parameter. Authorization header requires "
        "'Signature' parameter. Authorization header requires 'SignedHeaders' parameter.");
  }

  std::optional<std::string_view> credential, signed_headers, signature;
  for (std::string_view piece : split(rest.substr(space), ',')) {
    piece = trimmed(piece);
    if (piece.empty()) continue;
    std::size_t eq = piece.find('=');
    if (eq == std::string_view::npos) {
      return incomplete("'" + clip(piece) +
                        "' not a valid key=value pair (missing equal-sign) in Authorization "
                        "header: '" +
                        header + "'.");
    }
    std::string_view key = trimmed(piece.substr(0, eq));
    std::optional<std::string_view>* slot = key == "Credential"      ? &credential
                                            : key == "SignedHeaders" ? &signed_headers
                                            : key == "Signature"     ? &signature
                                                                     : nullptr;
    if (slot == nullptr) continue;  // as AWS: parameters it does not know are not an error
    if (slot->has_value()) {
      // Two values for one parameter would let two readers of this header disagree.
      return incomplete("Authorization header has more than one '" + std::string(key) +
                        "' parameter. Authorization=" + header);
    }
    *slot = trimmed(piece.substr(eq + 1));
  }
  auto amz_date = request.headers.find("x-amz-date");
  std::string missing;
  if (!credential || credential->empty()) {
    missing += "Authorization header requires 'Credential' parameter. ";
  }
  if (!signature || signature->empty()) {
    missing += "Authorization header requires 'Signature' parameter. ";
  }
  if (!signed_headers || signed_headers->empty()) {
    missing += "Authorization header requires 'SignedHeaders' parameter. ";
  }
  // AWS also takes the Date header; every SDK sends X-Amz-Date, and one clock field is enough.
  if (amz_date == request.headers.end()) {
    missing += "Authorization header requires existence of a 'X-Amz-Date' header. ";
  }
  if (!missing.empty()) return incomplete(missing + "Authorization=" + header);

  Authorization auth;
  auth.amz_date = amz_date->second;
  std::optional<UnixMillis> signed_at = parse_amz_date(auth.amz_date);
  if (!signed_at) {
    return incomplete("Date must be in ISO-8601 'basic format'. Got '" + clip(auth.amz_date) +
                      "'. See http://en.wikipedia.org/wiki/ISO_8601");
  }
  auth.signed_at = *signed_at;

  std::vector<std::string_view> parts = split(*credential, '/');
  if (parts.size() != 5 || parts[0].empty()) {
    return incomplete(
        "Credential must have exactly 5 slash-delimited elements, e.g. "
        "keyid/date/region/service/term, got '" +
        clip(*credential) + "'");
  }
  std::string scope_errors;
  if (parts[4] != kTerminator) {
    scope_errors += "Credential should be scoped with a valid terminator: 'aws4_request', not '" +
                    clip(parts[4]) + "'. ";
  }
  std::string_view day = std::string_view(auth.amz_date).substr(0, 8);
  if (parts[1] != day) {
    scope_errors +=
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from "
        "HTTP: '" +
        clip(parts[1]) + "' != '" + std::string(day) + "', from '" + auth.amz_date + "'. ";
  }
  if (!scope_errors.empty()) return invalid(scope_errors);
  auth.access_key_id = parts[0];
  auth.date = parts[1];
  auth.region = parts[2];
  auth.service = parts[3];

  for (std::string_view name : split(*signed_headers, ';')) {
    if (auth.signed_headers.size() == kMaxSignedHeaders) {
      return incomplete("SignedHeaders names more than " + std::to_string(kMaxSignedHeaders) +
                        " headers.");
    }
    // The canonical request lists headers in SignedHeaders order, so an unsorted or repeated
    // list would let one signature cover two different canonical forms.
    if (!valid_header_name(name) ||
        (!auth.signed_headers.empty() && name <= auth.signed_headers.back())) {
      return incomplete(
          "SignedHeaders must be distinct lower-case header names in ascending order, separated "
          "by ';', got '" +
          clip(*signed_headers) + "'.");
    }
    auth.signed_headers.emplace_back(name);
  }
  if (!std::binary_search(auth.signed_headers.begin(), auth.signed_headers.end(), "host")) {
    return invalid("'Host' must be a 'SignedHeader' in the AWS Authorization.");
  }
  auth.signature = *signature;
  return auth;
}

std::optional<Refusal> verify(const HttpRequest& request, const Authorization& auth,
                              const SecretBytes& signing_key_for_scope,
                              std::string_view expected_region, UnixMillis now) {
  if (auth.signed_at < now - kMaxClockSkew) {
    return Refusal{Failure::kSignatureExpired, "Signature expired: " + auth.amz_date +
                                                   " is now earlier than " +
                                                   format_amz_date(now - kMaxClockSkew) + " (" +
                                                   format_amz_date(now) + " - 5 min.)"};
  }
  if (auth.signed_at > now + kMaxClockSkew) {
    return Refusal{Failure::kSignatureExpired, "Signature not yet current: " + auth.amz_date +
                                                   " is still later than " +
                                                   format_amz_date(now + kMaxClockSkew) + " (" +
                                                   format_amz_date(now) + " + 5 min.)"};
  }
  std::string scope_errors;
  if (auth.region != expected_region) {
    scope_errors +=
        "Credential should be scoped to a valid region, not '" + clip(auth.region) + "'. ";
  }
  if (auth.service != kService) {
    scope_errors +=
        "Credential should be scoped to correct service: '" + std::string(kService) + "'. ";
  }
  if (!scope_errors.empty()) return invalid(scope_errors);

  // An absent header would sign as an empty value, so removing an empty header would go unnoticed.
  for (const std::string& name : auth.signed_headers) {
    if (!request.headers.contains(name)) {
      return invalid("The request is missing the signed header '" + name + "'.");
    }
  }
  std::string payload_hash = hex_sha256(request.body);
  auto sent_hash = request.headers.find("x-amz-content-sha256");
  if (sent_hash != request.headers.end() && sent_hash->second != payload_hash) {
    return invalid("The provided 'x-amz-content-sha256' header does not match what was computed.");
  }

  const std::string expected =
      signature(signing_key_for_scope,
                string_to_sign(auth.amz_date, auth.scope(),
                               canonical_request(request, auth.signed_headers, payload_hash)));
  // Only the length, which is public (always 64), may end the comparison early.
  bool same = auth.signature.size() == expected.size() &&
              Botan::constant_time_compare(
                  reinterpret_cast<const std::uint8_t*>(auth.signature.data()),
                  reinterpret_cast<const std::uint8_t*>(expected.data()), expected.size());
  if (!same) return invalid(std::string(kMismatch));
  return std::nullopt;
}

}  // namespace kekd::api::sigv4
