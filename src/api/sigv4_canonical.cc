// The canonical request and the HMAC chain of SigV4 (include/kekd/api/sigv4.h). Every rule here is
// pinned by the botocore/awscrt vectors and AWS's published examples in sigv4_test.cc.
#include <botan/hash.h>
#include <botan/mac.h>

#include <algorithm>
#include <cstdint>
#include <utility>

#include "kekd/api/sigv4.h"

namespace kekd::api::sigv4 {
namespace {

bool unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == '~';
}

bool whitespace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

// Upper-case hex digits, as RFC 3986 and every SDK write them.
void append_encoded(std::string& out, std::string_view text, bool keep_slash) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    if (unreserved(c) || (keep_slash && c == '/')) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kDigits[c >> 4]);
      out.push_back(kDigits[c & 0x0f]);
    }
  }
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A '%' not followed by two hex digits stays a literal '%' (and is then signed as "%25"): the
// SDKs never send one, and refusing here would only move the refusal to a less clear message.
std::string percent_decoded(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    int hi = -1, lo = -1;
    if (text[i] == '%' && i + 2 < text.size()) {
      hi = hex_digit(text[i + 1]);
      lo = hex_digit(text[i + 2]);
    }
    if (hi >= 0 && lo >= 0) {
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

// RFC 3986 §5.2.4 dot-segment removal, and empty segments dropped too, as botocore's
// normalize_url_path and the JS SDK's getCanonicalPath both do for services other than S3.
std::string canonical_uri(std::string_view path) {
  if (path.empty()) return "/";
  std::vector<std::string_view> kept;
  for (std::size_t start = 0; start <= path.size();) {
    std::size_t end = std::min(path.find('/', start), path.size());
    std::string_view segment = path.substr(start, end - start);
    if (segment == "..") {
      if (!kept.empty()) kept.pop_back();
    } else if (!segment.empty() && segment != ".") {
      kept.push_back(segment);
    }
    start = end + 1;
  }
  std::string normalized = path.front() == '/' ? "/" : "";
  for (std::size_t i = 0; i < kept.size(); ++i) {
    if (i > 0) normalized.push_back('/');
    normalized.append(kept[i]);
  }
  if (path.back() == '/' && !kept.empty()) normalized.push_back('/');
  std::string out;
  append_encoded(out, normalized, /*keep_slash=*/true);
  return out;
}

// Empty pieces ("a=1&&b=2", a trailing '&') are skipped, as awscrt and the JS SDK do; botocore's
// pure-Python signer would sign them as "=", but no client of ours produces them.
std::string canonical_query(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> pairs;
  for (std::size_t start = 0; start < query.size();) {
    std::size_t end = std::min(query.find('&', start), query.size());
    std::string_view piece = query.substr(start, end - start);
    start = end + 1;
    if (piece.empty()) continue;
    std::size_t eq = piece.find('=');
    std::string_view name = piece.substr(0, eq);
    std::string_view value = eq == std::string_view::npos ? "" : piece.substr(eq + 1);
    std::pair<std::string, std::string> pair;
    append_encoded(pair.first, percent_decoded(name), /*keep_slash=*/false);
    append_encoded(pair.second, percent_decoded(value), /*keep_slash=*/false);
    pairs.push_back(std::move(pair));
  }
  // Both sides are ASCII after encoding, so std::string's ordering is AWS's byte order.
  std::sort(pairs.begin(), pairs.end());
  std::string out;
  for (const auto& [name, value] : pairs) {
    if (!out.empty()) out.push_back('&');
    out += name;
    out.push_back('=');
    out += value;
  }
  return out;
}

void append_trimmed_collapsed(std::string& out, std::string_view value) {
  bool pending_space = false;
  bool any = false;
  for (char c : value) {
    if (whitespace(c)) {
      pending_space = any;
      continue;
    }
    if (pending_space) out.push_back(' ');
    pending_space = false;
    any = true;
    out.push_back(c);
  }
}

SecretBytes hmac_sha256(const SecretBytes& key, std::string_view message) {
  auto mac = Botan::MessageAuthenticationCode::create_or_throw("HMAC(SHA-256)");
  mac->set_key(key);
  mac->update(reinterpret_cast<const std::uint8_t*>(message.data()), message.size());
  return mac->final();
}

}  // namespace

std::string canonical_request(const HttpRequest& request,
                              const std::vector<std::string>& signed_headers,
                              std::string_view payload_hash_hex) {
  std::string_view target = request.target;
  std::size_t question = target.find('?');
  std::string_view path = target.substr(0, question);
  std::string_view query = question == std::string_view::npos ? "" : target.substr(question + 1);

  std::string out = request.method;
  out.push_back('\n');
  out += canonical_uri(path);
  out.push_back('\n');
  out += canonical_query(query);
  out.push_back('\n');
  for (const std::string& name : signed_headers) {
    out += name;
    out.push_back(':');
    auto it = request.headers.find(name);
    if (it != request.headers.end()) append_trimmed_collapsed(out, it->second);
    out.push_back('\n');
  }
  out.push_back('\n');
  for (std::size_t i = 0; i < signed_headers.size(); ++i) {
    if (i > 0) out.push_back(';');
    out += signed_headers[i];
  }
  out.push_back('\n');
  out += payload_hash_hex;
  return out;
}

std::string string_to_sign(std::string_view amz_date, std::string_view scope,
                           std::string_view canonical_request) {
  std::string out(kAlgorithm);
  out.push_back('\n');
  out += amz_date;
  out.push_back('\n');
  out += scope;
  out.push_back('\n');
  out += hex_sha256(canonical_request);
  return out;
}

SecretBytes signing_key(const SecretBytes& secret, std::string_view date, std::string_view region,
                        std::string_view service) {
  static constexpr std::string_view kPrefix = "AWS4";
  SecretBytes key(kPrefix.begin(), kPrefix.end());
  key.insert(key.end(), secret.begin(), secret.end());
  key = hmac_sha256(key, date);
  key = hmac_sha256(key, region);
  key = hmac_sha256(key, service);
  return hmac_sha256(key, kTerminator);
}

std::string signature(const SecretBytes& signing_key, std::string_view string_to_sign) {
  return to_hex(hmac_sha256(signing_key, string_to_sign));
}

std::string hex_sha256(std::string_view data) {
  auto hash = Botan::HashFunction::create_or_throw("SHA-256");
  hash->update(reinterpret_cast<const std::uint8_t*>(data.data()), data.size());
  return to_hex(hash->final());
}

}  // namespace kekd::api::sigv4
