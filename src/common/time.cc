#include "kekd/common/time.h"

#include <charconv>
#include <chrono>
#include <cstdio>

namespace kekd {
namespace {

bool read_int(std::string_view s, int& out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

}  // namespace

UnixMillis now_millis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string format_rfc3339(UnixMillis t) {
  using namespace std::chrono;
  sys_seconds secs = floor<seconds>(sys_time<milliseconds>(milliseconds(t)));
  sys_days day = floor<days>(secs);
  year_month_day ymd(day);
  hh_mm_ss hms(secs - day);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02ld:%02ld:%02lldZ", int(ymd.year()),
                unsigned(ymd.month()), unsigned(ymd.day()), long(hms.hours().count()),
                long(hms.minutes().count()), static_cast<long long>(hms.seconds().count()));
  return buf;
}

std::optional<UnixMillis> parse_rfc3339(std::string_view s) {
  // YYYY-MM-DDTHH:MM:SSZ
  if (s.size() != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
      s[16] != ':' || s[19] != 'Z') {
    return std::nullopt;
  }
  int y, mo, d, h, mi, se;
  if (!read_int(s.substr(0, 4), y) || !read_int(s.substr(5, 2), mo) ||
      !read_int(s.substr(8, 2), d) || !read_int(s.substr(11, 2), h) ||
      !read_int(s.substr(14, 2), mi) || !read_int(s.substr(17, 2), se)) {
    return std::nullopt;
  }
  using namespace std::chrono;
  year_month_day ymd{year(y), month(static_cast<unsigned>(mo)), day(static_cast<unsigned>(d))};
  if (!ymd.ok() || h > 23 || mi > 59 || se > 59 || h < 0 || mi < 0 || se < 0) {
    return std::nullopt;
  }
  sys_seconds t = sys_days(ymd) + hours(h) + minutes(mi) + seconds(se);
  return duration_cast<milliseconds>(t.time_since_epoch()).count();
}

std::optional<UnixMillis> parse_duration(std::string_view s) {
  struct Unit {
    std::string_view suffix;
    UnixMillis millis;
  };
  static constexpr Unit kUnits[] = {{"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000},
                                    {"d", 86'400'000}};
  for (const Unit& unit : kUnits) {
    if (s.size() > unit.suffix.size() && s.ends_with(unit.suffix)) {
      std::string_view digits = s.substr(0, s.size() - unit.suffix.size());
      long long n = 0;
      auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
      if (ec != std::errc() || end != digits.data() + digits.size() || n <= 0 ||
          n > 100LL * 365 * 86'400'000 / unit.millis) {
        continue;  // "5m" must not be read as 5 with a trailing "m" of "ms", and so on
      }
      return n * unit.millis;
    }
  }
  return std::nullopt;
}

}  // namespace kekd
