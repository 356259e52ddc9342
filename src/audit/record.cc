#include "kekd/audit/record.h"

#include <botan/base64.h>
#include <botan/hash.h>

#include <nlohmann/json.hpp>

#include <cstdio>

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

std::string canonical_json(const Record& r) {
  // nlohmann's objects are std::maps, so dump() writes members sorted by name, compactly: the
  // canonical form, as long as the strings hold no control characters (sanitize()).
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

std::string sha256_hex(std::string_view bytes) {
  auto sha256 = Botan::HashFunction::create_or_throw("SHA-256");
  sha256->update(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  Botan::secure_vector<std::uint8_t> digest = sha256->final();
  return to_hex(digest);
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
