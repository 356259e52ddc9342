// The record and checkpoint formats of docs/audit.md, against values computed independently
// (Python's json.dumps(sort_keys=True, separators=(',', ':'), ensure_ascii=False) and sha256sum).
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "kekd/audit/record.h"

using namespace kekd;
using namespace kekd::audit;

namespace {

constexpr UnixMillis kT = 1'795'428'000'123;  // 2026-11-23T10:00:00.123Z

Record first_record() {
  Record r;
  r.seq = 1;
  r.time = kT;
  r.request_id = "3f2a9c0d1e4b5a6c";
  r.principal = "app-7";
  r.action = "key.unwrap";
  r.key = "payments";
  r.version = 2;
  r.prev = std::string(kGenesisHash);
  return r;
}

}  // namespace

TEST_CASE("AuditCanonicalJsonAndHashKnownValues") {
  Record r = first_record();
  const std::string json = canonical_json(r);
  CHECK(json == R"({"action":"key.unwrap","error":null,"key":"payments","outcome":"ok",)"
                R"("prev":"0000000000000000000000000000000000000000000000000000000000000000",)"
                R"("principal":"app-7","request_id":"3f2a9c0d1e4b5a6c","seq":1,"subject":null,)"
                R"("time":"2026-11-23T10:00:00.123Z","version":2})");
  // Computed independently: hashlib.sha256 over the string above.
  CHECK(sha256_hex(json) == "b167e0070edfe7bf811efcfadf3c43215945c97603a3157bbcfa77efa37f18c3");

  // An error record: nulls written out, UTF-8 as is, only " and \ escaped, / not.
  Record e;
  e.seq = 2;
  e.time = kT + 884;
  e.request_id = "";
  e.principal = "j\xC3\xBCrgen \"x\" \\ /";
  e.action = "auth.failure";
  e.error = "unauthenticated";
  e.subject = "POST /v1/clients";
  e.prev = "b167e0070edfe7bf811efcfadf3c43215945c97603a3157bbcfa77efa37f18c3";
  const std::string json2 = canonical_json(e);
  CHECK(json2 ==
        "{\"action\":\"auth.failure\",\"error\":\"unauthenticated\",\"key\":null,"
        "\"outcome\":\"error\","
        "\"prev\":\"b167e0070edfe7bf811efcfadf3c43215945c97603a3157bbcfa77efa37f18c3\","
        "\"principal\":\"j\xC3\xBCrgen \\\"x\\\" \\\\ /\",\"request_id\":\"\",\"seq\":2,"
        "\"subject\":\"POST /v1/clients\","
        "\"time\":\"2026-11-23T10:00:01.007Z\",\"version\":null}");
  CHECK(sha256_hex(json2) == "4fc1e00d104936a5c5fcc1d4eb1ff6997b1e41781309922b85e37b95f7599bea");

  // The canonical form is a fixed point of parsing and dumping again (what the verifier does).
  CHECK(nlohmann::json::parse(json2).dump() == json2);
}

TEST_CASE("AuditCheckpointMessageAndJson") {
  const std::string hash = "e997914f81b3dbe86a3eb1320322346163404cd9e0ce604a36f887ef592c92f2";
  CHECK(checkpoint_message(2, hash, 1, "2026-11-23T10:00:02.000Z") ==
        "kekd-audit-checkpoint v1\nseq=2\nhash=" + hash +
            "\nprev_seq=1\ntime=2026-11-23T10:00:02.000Z\n");
  Checkpoint c;
  c.seq = 2;
  c.hash = hash;
  c.prev_seq = 1;
  c.time = 1'795'428'002'000;
  c.signature = Bytes{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01};
  CHECK(checkpoint_json(c) == R"({"hash":")" + hash +
                                  R"(","prev_seq":1,"seq":2,"signature":"MAYCAQECAQE=",)"
                                  R"("time":"2026-11-23T10:00:02.000Z"})");
}

TEST_CASE("AuditTimeFormatHasExactlyThreeFractionDigits") {
  CHECK(format_time(kT) == "2026-11-23T10:00:00.123Z");
  CHECK(format_time(kT - 123) == "2026-11-23T10:00:00.000Z");
  CHECK(format_time(kT + 876) == "2026-11-23T10:00:00.999Z");
  CHECK(format_time(0) == "1970-01-01T00:00:00.000Z");
  CHECK(format_time(-1) == "1969-12-31T23:59:59.999Z");
  CHECK(parse_time("2026-11-23T10:00:00.123Z") == kT);
  CHECK(parse_time(format_time(-1)) == -1);
  for (const char* bad : {"2026-11-23T10:00:00Z", "2026-11-23T10:00:00.12Z",
                          "2026-11-23T10:00:00.1234Z", "2026-11-23T10:00:00.12aZ",
                          "2026-11-23T10:00:00.123+00:00", "2026-13-23T10:00:00.123Z", ""}) {
    CHECK_MESSAGE(!parse_time(bad), bad);
  }
}

TEST_CASE("AuditSanitizeReplacesControlCharactersAndInvalidUtf8") {
  const std::string fffd = "\xEF\xBF\xBD";
  CHECK(sanitize("plain ascii /\"\\") == "plain ascii /\"\\");
  CHECK(sanitize("j\xC3\xBCrgen \xE2\x82\xAC \xF0\x9F\x94\x91") ==
        "j\xC3\xBCrgen \xE2\x82\xAC \xF0\x9F\x94\x91");
  CHECK(sanitize(std::string("a\0b", 3)) == "a" + fffd + "b");
  CHECK(sanitize("tab\there\nnl\x7f") == "tab" + fffd + "here" + fffd + "nl" + fffd);
  CHECK(sanitize("\xC3") == fffd);                                   // truncated sequence
  CHECK(sanitize("\xC0\xAF") == fffd + fffd);                        // overlong '/'
  CHECK(sanitize("\xED\xA0\x80") == fffd + fffd + fffd);             // a UTF-16 surrogate
  CHECK(sanitize("\xF4\x90\x80\x80") == fffd + fffd + fffd + fffd);  // above U+10FFFF
  CHECK(sanitize("\xFFok") == fffd + "ok");
}

TEST_CASE("AuditNormalizeBoundsEvents") {
  AuditEvent e;
  e.principal = "bad\x01name";
  e.action = "key.wrap";
  e.key = "payments";
  auto ok = normalize(e);
  REQUIRE(ok.ok());
  CHECK(ok->principal == "bad\xEF\xBF\xBDname");

  auto expect_invalid = [](AuditEvent event) {
    auto r = normalize(std::move(event));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == Code::kInvalidArgument);
  };
  AuditEvent no_action = e;
  no_action.action = "";
  expect_invalid(no_action);
  AuditEvent upper = e;
  upper.action = "Key.Wrap";
  expect_invalid(upper);
  AuditEvent long_action = e;
  long_action.action = std::string(65, 'a');
  expect_invalid(long_action);
  AuditEvent long_principal = e;
  long_principal.principal = std::string(kMaxPrincipalBytes + 1, 'p');
  expect_invalid(long_principal);
  AuditEvent long_request = e;
  long_request.request_id = std::string(kMaxRequestIdBytes + 1, 'r');
  expect_invalid(long_request);
  AuditEvent empty_key = e;
  empty_key.key = "";
  expect_invalid(empty_key);
  AuditEvent version_zero = e;
  version_zero.version = 0;
  expect_invalid(version_zero);

  // The outcome follows the error: a code name for "error", null for "ok".
  e.error = Code::kInvalidCiphertext;
  Record r = make_record(*normalize(e), 5, kT, kGenesisHash);
  CHECK(r.error == "invalid_ciphertext");
  CHECK(canonical_json(r).find(R"("error":"invalid_ciphertext")") != std::string::npos);
  CHECK(canonical_json(r).find(R"("outcome":"error")") != std::string::npos);
}

TEST_CASE("AuditBoundedCutsAtACharacterBoundary") {
  CHECK(bounded("payments", 128) == "payments");
  CHECK(bounded(std::string(200, 'k'), 128) == std::string(125, 'k') + "\xE2\x80\xA6");
  CHECK(bounded(std::string(200, 'k'), 128).size() == 128);
  // "ü" is two bytes; a cut through it moves back to its start.
  const std::string umlauts = [] {
    std::string s;
    for (int i = 0; i < 100; ++i) s += "\xC3\xBC";
    return s;
  }();
  const std::string cut = bounded(umlauts, 10);
  CHECK(cut == "\xC3\xBC\xC3\xBC\xC3\xBC\xE2\x80\xA6");
  CHECK(sanitize(cut) == cut);
  // Control characters become U+FFFD before the cut, so the result needs no escape.
  CHECK(bounded("a\nb", 128) ==
        "a\xEF\xBF\xBD"
        "b");
  // What bounded() returns always passes normalize().
  AuditEvent event;
  event.action = "key.wrap";
  event.key = bounded(std::string(5000, 'x'), kMaxKeyBytes);
  event.request_id = bounded(std::string(500, 'r'), kMaxRequestIdBytes);
  CHECK(normalize(event).ok());
}

// canonical_json writes records directly rather than through nlohmann (the audit writer's hot
// path); nlohmann's dump of the same members is the oracle, on generated records that mix the
// characters that need care: quotes, backslashes, slashes, UTF-8, empty and absent members.
TEST_CASE("AuditCanonicalJsonMatchesNlohmannOnGeneratedRecords") {
  std::uint64_t state = 0x9E3779B97F4A7C15ULL;
  auto next = [&] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  const std::string_view pieces[] = {
      "a", "Z", "0", " ", "\"",       "\\",           "/",
      "{", "}", ":", ",", "\xC3\xBC", "\xE2\x80\xA6", "\xF0\x9F\x94\x91",
      "~", "."};
  auto text = [&](std::size_t max) {
    std::string s;
    for (std::size_t n = next() % (max + 1); n > 0; --n) s += pieces[next() % std::size(pieces)];
    return sanitize(s);
  };
  auto maybe = [&](std::size_t max) {
    return next() % 3 == 0 ? std::nullopt : std::optional<std::string>(text(max));
  };
  for (int i = 0; i < 5000; ++i) {
    Record r;
    r.seq = static_cast<std::int64_t>(next() % 10'000'000'000ULL) + 1;
    r.time = static_cast<UnixMillis>(next() % 4'000'000'000'000ULL);
    r.request_id = text(40);
    r.principal = text(20);
    r.action = next() % 2 ? "key.wrap" : "auth.failure";
    r.key = maybe(20);
    if (next() % 2) r.version = static_cast<std::uint32_t>(next());
    r.subject = maybe(30);
    if (next() % 2) r.error = "permission_denied";
    r.prev = std::string(kGenesisHash);
    nlohmann::json j = {{"seq", r.seq},
                        {"time", format_time(r.time)},
                        {"request_id", r.request_id},
                        {"principal", r.principal},
                        {"action", r.action},
                        {"key", r.key ? nlohmann::json(*r.key) : nlohmann::json(nullptr)},
                        {"version", r.version ? nlohmann::json(*r.version) : nlohmann::json()},
                        {"subject", r.subject ? nlohmann::json(*r.subject) : nlohmann::json()},
                        {"outcome", r.error ? "error" : "ok"},
                        {"error", r.error ? nlohmann::json(*r.error) : nlohmann::json()},
                        {"prev", r.prev}};
    const std::string expected = j.dump();
    REQUIRE_MESSAGE(canonical_json(r) == expected, expected);
  }
}
