#include "kekd/audit/record.h"

#include <botan/base64.h>
#include <botan/hash.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstdio>
#include <memory>

namespace kekd::audit {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD in UTF-8

// Length of the well-formed UTF-8 sequence at the start of s (Unicode Table 3-7: no overlong
// forms, no surrogates, nothing above U+10FFFF), or 0 if it is not one.
std::size_t utf8_sequence_length(std::string_view s) {
  auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  auto continuation = [&](std::size_t i, unsigned char lo = 0x80, unsigned char hi = 0xBF) {
    return i < s.size() && byte(i) >= lo && byte(i) <= hi;
  };
  unsigned char b = byte(0);
  if (b < 0x80) {
    return 1;
  }
  if (b >= 0xC2 && b <= 0xDF) {
    return continuation(1) ? 2 : 0;
  }
  if (b >= 0xE0 && b <= 0xEF) {
    unsigned char lo = b == 0xE0 ? 0xA0 : 0x80;
    unsigned char hi = b == 0xED ? 0x9F : 0xBF;
    return continuation(1, lo, hi) && continuation(2) ? 3 : 0;
  }
  if (b >= 0xF0 && b <= 0xF4) {
    unsigned char lo = b == 0xF0 ? 0x90 : 0x80;
    unsigned char hi = b == 0xF4 ? 0x8F : 0xBF;
    return continuation(1, lo, hi) && continuation(2) && continuation(3) ? 4 : 0;
  }
  return 0;
}

bool is_action_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

Error out_of_bounds(std::string_view member, std::size_t max) {
  return Error(Code::kInvalidArgument, "audit: " + std::string(member) + " is longer than " +
                                           std::to_string(max) + " bytes");
}

// A member that is either absent or a non-empty string within its bound, sanitized in place.
Status normalize_optional(std::optional<std::string>& member, std::string_view name,
                          std::size_t max) {
  if (!member) {
    return ok_status();
  }
  *member = sanitize(*member);
  if (member->empty()) {
    return Error(Code::kInvalidArgument,
                 "audit: " + std::string(name) + ", when given, is not empty");
  }
  if (member->size() > max) {
    return out_of_bounds(name, max);
  }
  return ok_status();
}

Json nullable(const std::optional<std::string>& s) { return s ? Json(*s) : Json(nullptr); }

}  // namespace

std::string sanitize(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  while (!text.empty()) {
    std::size_t n = utf8_sequence_length(text);
    unsigned char first = static_cast<unsigned char>(text[0]);
    if (n == 0 || first < 0x20 || first == 0x7F) {
      out += kReplacement;
      n = 1;  // resynchronise on the next byte
    } else {
      out.append(text.substr(0, n));
    }
    text.remove_prefix(n);
  }
  return out;
}

std::string bounded(std::string_view text, std::size_t max) {
  std::string out = sanitize(text);
  if (out.size() <= max) {
    return out;
  }
  constexpr std::string_view kEllipsis = "\xE2\x80\xA6";  // U+2026
  std::size_t cut = max - kEllipsis.size();
  // Back to the start of a character: continuation bytes are 10xxxxxx.
  while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) {
    --cut;
  }
  out.resize(cut);
  out += kEllipsis;
  return out;
}

Result<AuditEvent> normalize(AuditEvent event) {
  event.request_id = sanitize(event.request_id);
  event.principal = sanitize(event.principal);
  if (event.request_id.size() > kMaxRequestIdBytes) {
    return out_of_bounds("request_id", kMaxRequestIdBytes);
  }
  if (event.principal.size() > kMaxPrincipalBytes) {
    return out_of_bounds("principal", kMaxPrincipalBytes);
  }
  bool action_ok = !event.action.empty() && event.action.size() <= kMaxActionBytes;
  for (char c : event.action) {
    action_ok = action_ok && is_action_char(c);
  }
  if (!action_ok) {
    return Error(Code::kInvalidArgument,
                 "audit: an action is 1 to 64 characters from a-z, 0-9, '_', '.' and '-'");
  }
  KEKD_RETURN_IF_ERROR(normalize_optional(event.key, "key", kMaxKeyBytes));
  KEKD_RETURN_IF_ERROR(normalize_optional(event.subject, "subject", kMaxSubjectBytes));
  if (event.version && *event.version < 1) {
    return Error(Code::kInvalidArgument, "audit: a key version, when given, is at least 1");
  }
  return event;
}

Record make_record(const AuditEvent& event, std::int64_t seq, UnixMillis time,
                   std::string_view prev) {
  Record r;
  r.seq = seq;
  r.time = time;
  r.request_id = event.request_id;
  r.principal = event.principal;
  r.action = event.action;
  r.key = event.key;
  r.version = event.version;
  r.subject = event.subject;
  if (event.error) {
    r.error = std::string(code_name(*event.error));
  }
  r.prev = std::string(prev);
  return r;
}

namespace {

// nlohmann's dump() of the record: members sorted by name (its objects are std::maps), compact.
// The reference for canonical_json's fast path, and what it falls back to.
std::string canonical_json_via_nlohmann(const Record& r) {
  Json j = {{"seq", r.seq},
            {"time", format_time(r.time)},
            {"request_id", r.request_id},
            {"principal", r.principal},
            {"action", r.action},
            {"key", nullable(r.key)},
            {"version", r.version ? Json(*r.version) : Json(nullptr)},
            {"subject", nullable(r.subject)},
            {"outcome", r.error ? "error" : "ok"},
            {"error", nullable(r.error)},
            {"prev", r.prev}};
  // replace, not the default strict: a string that skipped sanitize() must not throw here.
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// Printable ASCII only: then the JSON string is the text with '"' and '\\' escaped, exactly as
// nlohmann writes it. Anything else (UTF-8, control characters, DEL) takes the reference path.
bool plain_ascii(std::string_view s) {
  for (char c : s) {
    if (c < 0x20 || c > 0x7E) return false;
  }
  return true;
}

void append_string(std::string& out, std::string_view s) {
  out += '"';
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}

void append_nullable(std::string& out, const std::optional<std::string>& s) {
  if (s) {
    append_string(out, *s);
  } else {
    out += "null";
  }
}

}  // namespace

std::string canonical_json(const Record& r) {
  // The audit writer serialises every record on one thread: building an nlohmann object for it
  // cost ~40 allocations a record. This writes the same bytes directly (record_test.cc compares
  // the two on generated records), members in nlohmann's (sorted) order.
  const std::string time = format_time(r.time);
  auto plain_or_absent = [](const std::optional<std::string>& s) { return !s || plain_ascii(*s); };
  const std::string_view strings[] = {r.request_id, r.principal, r.action, r.prev, time};
  if (!std::all_of(std::begin(strings), std::end(strings), plain_ascii) ||
      !plain_or_absent(r.key) || !plain_or_absent(r.subject) || !plain_or_absent(r.error)) {
    return canonical_json_via_nlohmann(r);
  }
  std::string out;
  out.reserve(256 + r.request_id.size() + r.principal.size() + (r.subject ? r.subject->size() : 0) +
              (r.key ? r.key->size() : 0));
  out += "{\"action\":";
  append_string(out, r.action);
  out += ",\"error\":";
  append_nullable(out, r.error);
  out += ",\"key\":";
  append_nullable(out, r.key);
  out += ",\"outcome\":";
  out += r.error ? "\"error\"" : "\"ok\"";
  out += ",\"prev\":";
  append_string(out, r.prev);
  out += ",\"principal\":";
  append_string(out, r.principal);
  out += ",\"request_id\":";
  append_string(out, r.request_id);
  out += ",\"seq\":";
  out += std::to_string(r.seq);
  out += ",\"subject\":";
  append_nullable(out, r.subject);
  out += ",\"time\":";
  append_string(out, time);
  out += ",\"version\":";
  out += r.version ? std::to_string(*r.version) : "null";
  out += '}';
  return out;
}

std::string sha256_hex(std::string_view bytes) {
  // One hash object per thread: HashFunction::create looks the name up and allocates each time,
  // and the audit writer hashes every record. final() leaves the object ready for the next use.
  thread_local std::unique_ptr<Botan::HashFunction> sha256 =
      Botan::HashFunction::create_or_throw("SHA-256");
  sha256->update(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  std::array<std::uint8_t, 32> digest;
  sha256->final(digest.data());
  return to_hex(ByteView(digest.data(), digest.size()));
}

std::string format_time(UnixMillis t) {
  std::string seconds = format_rfc3339(t);  // "...:SSZ", the milliseconds floored away
  UnixMillis ms = t % 1000;
  if (ms < 0) {
    ms += 1000;  // before 1970 the floored second is earlier, and the fraction counts up from it
  }
  char fraction[6];
  std::snprintf(fraction, sizeof fraction, ".%03dZ", static_cast<int>(ms));
  seconds.pop_back();
  return seconds + fraction;
}

std::optional<UnixMillis> parse_time(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS.mmmZ
  if (text.size() != 24 || text[19] != '.' || text[23] != 'Z') {
    return std::nullopt;
  }
  int ms = 0;
  for (char c : text.substr(20, 3)) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    ms = ms * 10 + (c - '0');
  }
  std::optional<UnixMillis> seconds = parse_rfc3339(std::string(text.substr(0, 19)) + "Z");
  if (!seconds) {
    return std::nullopt;
  }
  return *seconds + ms;
}

std::string checkpoint_message(std::int64_t seq, std::string_view hash, std::int64_t prev_seq,
                               std::string_view time) {
  return "kekd-audit-checkpoint v1\nseq=" + std::to_string(seq) + "\nhash=" + std::string(hash) +
         "\nprev_seq=" + std::to_string(prev_seq) + "\ntime=" + std::string(time) + "\n";
}

std::string checkpoint_json(const Checkpoint& c) {
  Json j = {{"seq", c.seq},
            {"hash", c.hash},
            {"prev_seq", c.prev_seq},
            {"time", format_time(c.time)},
            {"signature", Botan::base64_encode(c.signature.data(), c.signature.size())}};
  return j.dump();
}

}  // namespace kekd::audit
