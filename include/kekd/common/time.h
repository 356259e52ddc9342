// Time as kekd stores it (milliseconds since the Unix epoch, UTC) and as it writes it for people
// and signatures (RFC 3339 with seconds, "2026-11-23T10:00:00Z").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kekd {

using UnixMillis = std::int64_t;

UnixMillis now_millis();

// "2026-11-23T10:00:00Z": whole seconds, the milliseconds dropped.
std::string format_rfc3339(UnixMillis t);

// Accepts exactly the form format_rfc3339 writes; std::nullopt for anything else.
std::optional<UnixMillis> parse_rfc3339(std::string_view text);

// "24h", "30m", "7d", "90s", "500ms" -> milliseconds; std::nullopt if malformed or not positive.
std::optional<UnixMillis> parse_duration(std::string_view text);

}  // namespace kekd
