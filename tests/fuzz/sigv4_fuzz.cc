// AWS Signature V4 (include/kekd/api/sigv4.h): the Authorization header parser, the canonical
// request builder and the verification that joins them, over requests built from the input:
//
//   line 1     method
//   line 2     target (path and query)
//   line 3     Authorization value (an empty line: no Authorization header)
//   line 4     X-Amz-Date value (an empty line: no X-Amz-Date header)
//   lines 5..  "name:value" headers (names lower-cased, as server.cc hands them over), up to an
//              empty line; the rest is the body
//
// Properties:
//  - parse: kMissingAuthenticationToken exactly when the Authorization value parse() sees (line 3
//    and any "authorization:" header lines, joined) is absent or blank;
//    an accepted header satisfies its contract (signed headers valid, strictly ascending, with
//    "host", at most 64; the scope date is X-Amz-Date's day) and formatting it again as the SDKs
//    do parses back to the same fields;
//  - canonical_request: the documented line structure; the URI has only unreserved characters,
//    '/' and %XX escapes and no dot segments; the query is sorted and canonical (building it from
//    itself changes nothing); header values are trimmed with whitespace runs collapsed;
//  - verify: the request signed correctly for its own scope is accepted; with any other signature
//    it is refused, and the refusal never quotes the expected signature or the signing key.
#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "fuzz_check.h"
#include "kekd/api/sigv4.h"

using namespace kekd;
using namespace kekd::api;

namespace {

std::vector<std::string_view> split(std::string_view s, char separator) {
  std::vector<std::string_view> parts;
  for (std::size_t start = 0;;) {
    std::size_t end = s.find(separator, start);
    parts.push_back(s.substr(start, end - start));
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

bool next_line(std::string_view& text, std::string_view& line) {
  std::size_t lf = text.find('\n');
  if (lf == std::string_view::npos) return false;
  line = text.substr(0, lf);
  text.remove_prefix(lf + 1);
  return true;
}

bool unreserved(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == '~';
}

bool upper_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); }

// Only unreserved characters, %XX with upper-case hex, and the characters in `also`.
bool encoded(std::string_view s, std::string_view also) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      if (i + 2 >= s.size() || !upper_hex(s[i + 1]) || !upper_hex(s[i + 2])) return false;
      i += 2;
    } else if (!unreserved(s[i]) && also.find(s[i]) == std::string_view::npos) {
      return false;
    }
  }
  return true;
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

std::string authorization_header(const sigv4::Authorization& auth, std::string_view signature) {
  std::string names;
  for (const std::string& name : auth.signed_headers) {
    names += (names.empty() ? "" : ";") + name;
  }
  return std::string(sigv4::kAlgorithm) + " Credential=" + auth.access_key_id + "/" + auth.scope() +
         ", SignedHeaders=" + names + ", Signature=" + std::string(signature);
}

void check_canonical_request(const HttpRequest& request,
                             const std::vector<std::string>& signed_headers) {
  const std::string hash = sigv4::hex_sha256(request.body);
  const std::string canonical = sigv4::canonical_request(request, signed_headers, hash);
  std::vector<std::string_view> lines = split(canonical, '\n');
  FUZZ_CHECK(lines.size() == 3 + signed_headers.size() + 3);
  FUZZ_CHECK(lines[0] == request.method);

  const std::string_view uri = lines[1];
  const std::string_view path =
      std::string_view(request.target).substr(0, request.target.find('?'));
  if (path.empty() || path.starts_with('/')) FUZZ_CHECK(uri.starts_with('/'));
  FUZZ_CHECK(encoded(uri, "/"));
  for (std::string_view segment : split(uri, '/')) {
    FUZZ_CHECK(segment != "." && segment != "..");
  }

  const std::string_view query = lines[2];
  FUZZ_CHECK(encoded(query, "=&"));
  std::vector<std::string_view> pairs =
      query.empty() ? std::vector<std::string_view>{} : split(query, '&');
  for (std::string_view pair : pairs) {
    FUZZ_CHECK(std::count(pair.begin(), pair.end(), '=') == 1);
  }
  std::vector<std::pair<std::string_view, std::string_view>> sorted;
  for (std::string_view pair : pairs) {
    std::size_t eq = pair.find('=');
    sorted.emplace_back(pair.substr(0, eq), pair.substr(eq + 1));
  }
  FUZZ_CHECK(std::is_sorted(sorted.begin(), sorted.end()));
  HttpRequest again = request;
  again.target = "/?" + std::string(query);
  FUZZ_CHECK(split(sigv4::canonical_request(again, {}, hash), '\n')[2] == query);

  for (std::size_t i = 0; i < signed_headers.size(); ++i) {
    const std::string_view header = lines[3 + i];
    FUZZ_CHECK(header.starts_with(signed_headers[i] + ":"));
    const std::string_view value = header.substr(signed_headers[i].size() + 1);
    FUZZ_CHECK(value.empty() || (!is_space(value.front()) && !is_space(value.back())));
    for (std::size_t j = 0; j < value.size(); ++j) {
      FUZZ_CHECK(!is_space(value[j]) || (value[j] == ' ' && value[j + 1] != ' '));
    }
  }
  FUZZ_CHECK(lines[3 + signed_headers.size()].empty());
  std::string names;
  for (const std::string& name : signed_headers) names += (names.empty() ? "" : ";") + name;
  FUZZ_CHECK(lines[4 + signed_headers.size()] == names);
  FUZZ_CHECK(lines[5 + signed_headers.size()] == hash);
}

void check_verify(HttpRequest request, const sigv4::Authorization& auth) {
  // verify() needs what a real request has: the KMS service, every signed header, a body hash
  // that matches. Requests without these are refused before the signature, as tested elsewhere.
  if (auth.service != sigv4::kService) return;
  for (const std::string& name : auth.signed_headers) {
    if (!request.headers.contains(name)) return;
  }
  const std::string hash = sigv4::hex_sha256(request.body);
  auto sent_hash = request.headers.find("x-amz-content-sha256");
  if (sent_hash != request.headers.end() && sent_hash->second != hash) return;

  const SecretBytes secret = {'f', 'u', 'z', 'z', '-', 's', 'e', 'c', 'r', 'e', 't'};
  const SecretBytes key = sigv4::signing_key(secret, auth.date, auth.region, auth.service);
  const std::string expected = sigv4::signature(
      key, sigv4::string_to_sign(auth.amz_date, auth.scope(),
                                 sigv4::canonical_request(request, auth.signed_headers, hash)));

  std::optional<sigv4::Refusal> refused =
      sigv4::verify(request, auth, key, auth.region, auth.signed_at);
  if (auth.signature == expected) {
    FUZZ_CHECK(!refused);
  } else {
    FUZZ_CHECK(refused && refused->failure == sigv4::Failure::kInvalidSignature);
    FUZZ_CHECK(refused->message.find(expected) == std::string::npos);
    FUZZ_CHECK(refused->message.find(to_hex(key)) == std::string::npos);
  }

  // The same request with the right signature: the header is rebuilt, so it must parse back to
  // the same fields and verify.
  request.headers["authorization"] = authorization_header(auth, expected);
  std::variant<sigv4::Authorization, sigv4::Refusal> signed_auth = sigv4::parse(request);
  if (request.headers["authorization"].size() > sigv4::kMaxAuthorizationBytes) return;
  FUZZ_CHECK(std::holds_alternative<sigv4::Authorization>(signed_auth));
  FUZZ_CHECK(!sigv4::verify(request, std::get<sigv4::Authorization>(signed_auth), key, auth.region,
                            auth.signed_at));
  // One more body byte and it no longer verifies (unless the sent body hash is refused first).
  request.body.push_back('x');
  FUZZ_CHECK(sigv4::verify(request, std::get<sigv4::Authorization>(signed_auth), key, auth.region,
                           auth.signed_at)
                 .has_value());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  HttpRequest request;
  std::string_view method, target, authorization, amz_date, line;
  if (!next_line(text, method) || !next_line(text, target) || !next_line(text, authorization) ||
      !next_line(text, amz_date)) {
    return 0;
  }
  request.method = method;
  request.target = target;
  if (!authorization.empty()) request.headers["authorization"] = authorization;
  if (!amz_date.empty()) request.headers["x-amz-date"] = amz_date;
  while (next_line(text, line) && !line.empty()) {
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return 0;
    std::string name(line.substr(0, colon));
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    std::string& value = request.headers[name];
    // A header sent twice reaches the API as one value joined with ',' (server.cc).
    value += (value.empty() ? "" : ",") + std::string(line.substr(colon + 1));
  }
  request.body = text;

  std::variant<sigv4::Authorization, sigv4::Refusal> parsed = sigv4::parse(request);
  if (const auto* refusal = std::get_if<sigv4::Refusal>(&parsed)) {
    // Line 3 is not the whole story: a header line may add (or be) an Authorization header too,
    // and a repeated one reaches parse() joined with ','. What counts is the value parse() sees.
    auto sent = request.headers.find("authorization");
    const bool blank =
        sent == request.headers.end() || std::all_of(sent->second.begin(), sent->second.end(),
                                                     [](char c) { return c == ' ' || c == '\t'; });
    FUZZ_CHECK((refusal->failure == sigv4::Failure::kMissingAuthenticationToken) == blank);
    FUZZ_CHECK(!refusal->message.empty());
    // Without a parsed header, the builder still sees whatever names a client could sign.
    std::vector<std::string> names;
    for (const auto& [name, value] : request.headers) names.push_back(name);
    check_canonical_request(request, names);
    return 0;
  }
  const sigv4::Authorization& auth = std::get<sigv4::Authorization>(parsed);
  FUZZ_CHECK(!auth.signed_headers.empty() &&
             auth.signed_headers.size() <= sigv4::kMaxSignedHeaders);
  FUZZ_CHECK(std::adjacent_find(auth.signed_headers.begin(), auth.signed_headers.end(),
                                [](const std::string& a, const std::string& b) {
                                  return a >= b;
                                }) == auth.signed_headers.end());
  FUZZ_CHECK(std::binary_search(auth.signed_headers.begin(), auth.signed_headers.end(), "host"));
  FUZZ_CHECK(auth.amz_date.size() == 16 && auth.date == auth.amz_date.substr(0, 8));
  FUZZ_CHECK(!auth.access_key_id.empty() && !auth.signature.empty());

  HttpRequest reformatted = request;
  reformatted.headers["authorization"] = authorization_header(auth, auth.signature);
  if (reformatted.headers["authorization"].size() <= sigv4::kMaxAuthorizationBytes) {
    std::variant<sigv4::Authorization, sigv4::Refusal> again = sigv4::parse(reformatted);
    FUZZ_CHECK(std::holds_alternative<sigv4::Authorization>(again));
    const auto& a = std::get<sigv4::Authorization>(again);
    FUZZ_CHECK(a.access_key_id == auth.access_key_id && a.scope() == auth.scope() &&
               a.signed_headers == auth.signed_headers && a.signature == auth.signature &&
               a.signed_at == auth.signed_at);
  }
  check_canonical_request(request, auth.signed_headers);
  check_verify(request, auth);
  return 0;
}
