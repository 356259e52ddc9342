// The offline verifier against tampered exports and stores: every kind of change is caught, and
// the failure names the place. The log: 40 records, a checkpoint after every 10th.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <botan/pem.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <sstream>

#include "unit/audit/audit_fixture.h"

using namespace kekd;
using namespace kekd::testing;
using Json = nlohmann::json;

namespace {

struct TamperFixture : AuditFixture {
  std::vector<std::string> lines;
  TamperFixture() {
    build_log(*store, hsm, 40, 10);
    lines = export_all(*store);
    REQUIRE(lines.size() == 44);
  }

  audit::VerifyResult verify(const std::vector<std::string>& input,
                             audit::VerifyOptions options = {}) {
    return verify_lines(input, spki, std::move(options));
  }
};

bool is_checkpoint(const std::string& line) {
  return line.find(R"("type":"checkpoint")") != std::string::npos;
}

// The index of record seq (or of the checkpoint at seq) in the lines.
std::size_t find_line(const std::vector<std::string>& lines, std::int64_t seq, bool checkpoint) {
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (is_checkpoint(lines[i]) == checkpoint && Json::parse(lines[i])["seq"] == seq) {
      return i;
    }
  }
  FAIL("no such line");
  return 0;
}
std::size_t record_line(const std::vector<std::string>& lines, std::int64_t seq) {
  return find_line(lines, seq, false);
}
std::size_t checkpoint_line(const std::vector<std::string>& lines, std::int64_t seq) {
  return find_line(lines, seq, true);
}

template <typename Edit>
std::string edited(const std::string& line, Edit edit) {
  Json j = Json::parse(line);
  edit(j);
  return j.dump();
}

// The record line with its "hash" recomputed, as a forger who knows the format would.
std::string rehashed(const std::string& line) {
  Json j = Json::parse(line);
  j.erase("type");
  j.erase("hash");
  std::string hash = audit::sha256_hex(j.dump());
  j["type"] = "record";
  j["hash"] = hash;
  return j.dump();
}

void expect_failure(const audit::VerifyResult& result, const std::string& failure) {
  CHECK_FALSE(result.ok);
  CHECK(result.failure == failure);
}

std::string shifted_time(const Json& time, UnixMillis by) {
  return audit::format_time(*audit::parse_time(time.get<std::string>()) + by);
}

}  // namespace

TEST_CASE("AuditVerifyAcceptsAnIntactLog") {
  TamperFixture f;
  audit::VerifyOptions strict;
  strict.require_checkpoint = true;
  audit::VerifyResult result = f.verify(f.lines, strict);
  CHECK_MESSAGE(result.ok, result.failure);
  CHECK(result.records == 40);
  CHECK(result.checkpoints == 4);
  CHECK(result.last_seq == 40);
  CHECK(result.last_checkpoint_seq == 40);
  CHECK(result.uncovered == 0);
  CHECK(result.last_hash == (*f.store->last_audit())->hash);
  CHECK(result.warnings.empty());

  // The same through verify_export (an istream, the key as PEM) and directly over the store.
  std::stringstream in;
  for (const std::string& line : f.lines) {
    in << line << '\n';
  }
  std::string pem = Botan::PEM_Code::encode(f.spki, "PUBLIC KEY");
  auto exported = audit::verify_export(in, bytes_of(pem), strict);
  REQUIRE(exported.ok());
  CHECK_MESSAGE(exported->ok, exported->failure);
  CHECK(exported->records == 40);
  audit::VerifyResult stored = f.verify_store(strict);
  CHECK_MESSAGE(stored.ok, stored.failure);
  CHECK(stored.checkpoints == 4);
}

TEST_CASE("AuditVerifyDetectsAChangedFieldInAnyRecord") {
  TamperFixture f;
  using Change = std::function<void(Json&)>;
  const std::vector<std::pair<const char*, Change>> changes = {
      {"principal", [](Json& j) { j["principal"] = "mallory"; }},
      {"request_id", [](Json& j) { j["request_id"] = "forged"; }},
      {"action", [](Json& j) { j["action"] = "key.rewrap"; }},
      {"key", [](Json& j) { j["key"] = "other"; }},
      {"version", [](Json& j) { j["version"] = 7; }},
      {"outcome",
       [](Json& j) {
         bool ok = j["outcome"] == "ok";
         j["outcome"] = ok ? "error" : "ok";
         j["error"] = ok ? Json("internal") : Json(nullptr);
       }},
      {"time", [](Json& j) { j["time"] = shifted_time(j["time"], 1); }},
      {"prev",
       [](Json& j) {
         std::string prev = j["prev"];
         prev[10] = prev[10] == 'a' ? 'b' : 'a';
         j["prev"] = prev;
       }},
      {"hash",
       [](Json& j) {
         std::string hash = j["hash"];
         hash[63] = hash[63] == '0' ? '1' : '0';
         j["hash"] = hash;
       }},
  };
  for (std::int64_t seq = 1; seq <= 40; ++seq) {
    for (const auto& [what, change] : changes) {
      std::vector<std::string> lines = f.lines;
      std::size_t i = record_line(lines, seq);
      lines[i] = edited(lines[i], change);
      CAPTURE(seq);
      CAPTURE(what);
      expect_failure(f.verify(lines), "record " + std::to_string(seq) + ": hash does not match");
    }
  }
}

TEST_CASE("AuditVerifyDetectsARecordChangedWithItsHashRecomputed") {
  TamperFixture f;
  // In the middle: the next record's prev no longer matches.
  std::vector<std::string> lines = f.lines;
  std::size_t i = record_line(lines, 5);
  lines[i] = rehashed(edited(lines[i], [](Json& j) { j["principal"] = "mallory"; }));
  expect_failure(f.verify(lines), "record 6: prev does not match the hash of record 5");

  // The last record: nothing follows, but its checkpoint covers another hash.
  lines = f.lines;
  i = record_line(lines, 40);
  lines[i] = rehashed(edited(lines[i], [](Json& j) { j["principal"] = "mallory"; }));
  expect_failure(f.verify(lines), "checkpoint at 40: hash does not match record 40");

  // The whole chain rewritten from record 15 on, every hash and prev consistent: the next
  // checkpoint, which the forger cannot sign, gives it away.
  lines = f.lines;
  std::string prev = Json::parse(lines[record_line(lines, 14)])["hash"];
  for (std::int64_t seq = 15; seq <= 40; ++seq) {
    i = record_line(lines, seq);
    lines[i] = rehashed(edited(lines[i], [&](Json& j) {
      j["prev"] = prev;
      if (seq == 15) j["principal"] = "mallory";
    }));
    prev = Json::parse(lines[i])["hash"];
  }
  expect_failure(f.verify(lines), "checkpoint at 20: hash does not match record 20");
}

TEST_CASE("AuditVerifyDetectsDeletedRecords") {
  TamperFixture f;
  for (std::int64_t seq : {1, 12, 39}) {
    std::vector<std::string> lines = f.lines;
    lines.erase(lines.begin() + static_cast<std::ptrdiff_t>(record_line(lines, seq)));
    expect_failure(f.verify(lines), "record " + std::to_string(seq) + " missing (seq jumps from " +
                                        std::to_string(seq - 1) + " to " + std::to_string(seq + 1) +
                                        ")");
  }
  // A record with a checkpoint: the checkpoint names it.
  std::vector<std::string> lines = f.lines;
  lines.erase(lines.begin() + static_cast<std::ptrdiff_t>(record_line(lines, 20)));
  expect_failure(f.verify(lines), "checkpoint at 20: record 20 is not in the log before it");

  // The covered tail, its checkpoint kept.
  lines = f.lines;
  lines.erase(lines.begin() + static_cast<std::ptrdiff_t>(record_line(lines, 38)),
              lines.begin() + static_cast<std::ptrdiff_t>(checkpoint_line(lines, 40)));
  expect_failure(f.verify(lines), "checkpoint at 40: record 40 is not in the log before it");
}

TEST_CASE("AuditVerifyDetectsReorderedRecords") {
  TamperFixture f;
  std::vector<std::string> lines = f.lines;
  std::swap(lines[record_line(lines, 12)], lines[record_line(lines, 13)]);
  expect_failure(f.verify(lines), "record 12 missing (seq jumps from 11 to 13)");

  lines = f.lines;
  std::swap(lines[record_line(lines, 30)], lines[checkpoint_line(lines, 30)]);
  expect_failure(f.verify(lines), "checkpoint at 30: record 30 is not in the log before it");
}

TEST_CASE("AuditVerifyDetectsInsertedRecords") {
  TamperFixture f;
  // A copy of a record.
  std::vector<std::string> lines = f.lines;
  std::size_t i = record_line(lines, 12);
  lines.insert(lines.begin() + static_cast<std::ptrdiff_t>(i) + 1, lines[i]);
  expect_failure(f.verify(lines), "record 12: appears twice");

  // A well-formed forged record 13 linked to record 12, before the real one.
  lines = f.lines;
  i = record_line(lines, 12);
  std::string prev = Json::parse(lines[i])["hash"];
  std::string forged = rehashed(edited(lines[i], [&](Json& j) {
    j["seq"] = 13;
    j["prev"] = prev;
    j["principal"] = "mallory";
  }));
  lines.insert(lines.begin() + static_cast<std::ptrdiff_t>(i) + 1, forged);
  expect_failure(f.verify(lines), "record 13: appears twice");

  // The same, renumbering every later record to make room: their hashes break.
  for (std::size_t k = i + 2; k < lines.size(); ++k) {
    lines[k] = edited(lines[k], [](Json& j) { j["seq"] = j["seq"].get<std::int64_t>() + 1; });
  }
  expect_failure(f.verify(lines), "record 14: hash does not match");
}

TEST_CASE("AuditVerifyDetectsChangedCheckpoints") {
  TamperFixture f;
  auto with_checkpoint_20 = [&](auto edit) {
    std::vector<std::string> lines = f.lines;
    std::size_t i = checkpoint_line(lines, 20);
    lines[i] = edited(lines[i], edit);
    return f.verify(lines);
  };
  expect_failure(with_checkpoint_20([](Json& j) {
                   std::string hash = j["hash"];
                   hash[0] = hash[0] == 'a' ? 'b' : 'a';
                   j["hash"] = hash;
                 }),
                 "checkpoint at 20: hash does not match record 20");
  expect_failure(with_checkpoint_20([](Json& j) { j["time"] = shifted_time(j["time"], 1); }),
                 "checkpoint at 20: signature does not verify");
  std::string signature_30 = Json::parse(f.lines[checkpoint_line(f.lines, 30)])["signature"];
  expect_failure(with_checkpoint_20([&](Json& j) { j["signature"] = signature_30; }),
                 "checkpoint at 20: signature does not verify");
  expect_failure(with_checkpoint_20([](Json& j) {
                   std::string sig = j["signature"];
                   sig[20] = sig[20] == 'A' ? 'B' : 'A';
                   j["signature"] = sig;
                 }),
                 "checkpoint at 20: signature does not verify");
  expect_failure(with_checkpoint_20([](Json& j) { j["signature"] = "not base64!"; }),
                 "checkpoint at 20: signature is not base64 of a DER signature");
  expect_failure(with_checkpoint_20([](Json& j) { j["seq"] = 21; }),
                 "checkpoint at 21: record 21 is not in the log before it");
  expect_failure(with_checkpoint_20([](Json& j) { j["seq"] = 19; }),
                 "checkpoint at 19: not right after record 19 (it follows record 20)");

  // A checkpoint well signed, but by another key than the one the verifier trusts.
  MemoryHsm other;
  require_ok(other.generate_signing_key(kAuditLabel));
  Json cp = Json::parse(f.lines[checkpoint_line(f.lines, 20)]);
  store::AuditCheckpointRow forged = signed_checkpoint(other, 20, cp["hash"], 10, kAuditT0 + 20'100);
  expect_failure(with_checkpoint_20([&](Json& j) {
                   j["signature"] = Json::parse(forged.checkpoint)["signature"];
                 }),
                 "checkpoint at 20: signature does not verify");

  // Moved after a later record, or repeated.
  std::vector<std::string> lines = f.lines;
  std::size_t i = checkpoint_line(lines, 20);
  std::swap(lines[i], lines[i + 1]);
  expect_failure(f.verify(lines),
                 "checkpoint at 20: not right after record 20 (it follows record 21)");
  lines = f.lines;
  lines.insert(lines.begin() + static_cast<std::ptrdiff_t>(i), lines[i]);
  expect_failure(f.verify(lines), "checkpoint at 20: not after the previous checkpoint (at 20)");
}

TEST_CASE("AuditVerifyReportsDeletedCheckpoints") {
  TamperFixture f;
  // The last one: its records are no longer covered, a warning or, when required, a failure.
  std::vector<std::string> lines = f.lines;
  lines.erase(lines.begin() + static_cast<std::ptrdiff_t>(checkpoint_line(lines, 40)));
  audit::VerifyResult result = f.verify(lines);
  CHECK(result.ok);
  CHECK(result.uncovered == 10);
  REQUIRE(result.warnings.size() == 1);
  CHECK(result.warnings[0] == "records 31 to 40 are not yet covered by a checkpoint");
  audit::VerifyOptions strict;
  strict.require_checkpoint = true;
  expect_failure(f.verify(lines, strict), "records 31 to 40 are not yet covered by a checkpoint");

  // One in the middle, or the first: the next one names its predecessor (prev_seq), signed.
  lines = f.lines;
  lines.erase(lines.begin() + static_cast<std::ptrdiff_t>(checkpoint_line(lines, 20)));
  expect_failure(f.verify(lines), "checkpoint at 30: the checkpoint before it, at 20, is missing");
  lines = f.lines;
  lines.erase(lines.begin() + static_cast<std::ptrdiff_t>(checkpoint_line(lines, 10)));
  expect_failure(f.verify(lines), "checkpoint at 20: the checkpoint before it, at 10, is missing");

  // A predecessor changed in the line (the signature covers it).
  lines = f.lines;
  std::size_t i = checkpoint_line(lines, 30);
  Json j = Json::parse(lines[i]);
  j["prev_seq"] = 10;
  lines[i] = j.dump();
  expect_failure(f.verify(lines),
                 "checkpoint at 30: it names the checkpoint at 10 as its predecessor, but that "
                 "is at 20");
}

TEST_CASE("AuditVerifyAnchorCatchesARolledBackTail") {
  TamperFixture f;
  const std::string hash_40 = (*f.store->last_audit())->hash;
  // Records 36..40 and the checkpoint at 40 removed: the chain alone sees an older, shorter log.
  std::vector<std::string> lines = f.lines;
  lines.erase(lines.begin() + static_cast<std::ptrdiff_t>(record_line(lines, 36)), lines.end());
  audit::VerifyResult result = f.verify(lines);
  CHECK(result.ok);
  CHECK(result.warnings.at(0) == "records 31 to 35 are not yet covered by a checkpoint");

  audit::VerifyOptions anchored;
  anchored.anchor = audit::Anchor{40, hash_40};
  expect_failure(f.verify(lines, anchored),
                 "the log ends at record 35, before the anchor record 40: records were removed");
  CHECK(f.verify(f.lines, anchored).ok);
  anchored.anchor = audit::Anchor{30, std::string(64, 'e')};
  expect_failure(f.verify(f.lines, anchored),
                 "record 30: hash differs from the anchor's " + std::string(64, 'e'));
}

TEST_CASE("AuditVerifyRejectsMalformedLines") {
  TamperFixture f;
  const std::size_t i = record_line(f.lines, 5);  // line 5
  auto with_line_5 = [&](std::string replacement) {
    std::vector<std::string> lines = f.lines;
    lines[i] = std::move(replacement);
    return f.verify(lines);
  };
  const std::string line = f.lines[i];
  expect_failure(with_line_5("not json"), "line 5: not JSON");
  expect_failure(with_line_5(""), "line 5: not JSON");
  expect_failure(with_line_5("[1,2]"), "line 5: not a JSON object");
  expect_failure(with_line_5(edited(line, [](Json& j) { j["type"] = "note"; })),
                 "line 5: type is neither \"record\" nor \"checkpoint\"");
  expect_failure(with_line_5(edited(line, [](Json& j) { j["seq"] = "5"; })),
                 "line 5: seq is not a positive integer");
  expect_failure(with_line_5(" " + line), "record 5: the line is not in canonical form");
  expect_failure(with_line_5(line + "\r"), "record 5: the line is not in canonical form");
  // A duplicate member: parsers disagree on which one counts, so it never passes.
  std::string duplicate = line;
  duplicate.insert(duplicate.size() - 1, R"(,"principal":"mallory")");
  expect_failure(with_line_5(duplicate), "record 5: the line is not in canonical form");
  expect_failure(with_line_5(edited(line, [](Json& j) { j["extra"] = 1; })),
                 "record 5: unexpected member \"extra\"");
  expect_failure(with_line_5(edited(line, [](Json& j) { j.erase("key"); })),
                 "record 5: member \"key\" is missing");
  expect_failure(with_line_5(edited(line, [](Json& j) { j.erase("hash"); })),
                 "record 5: hash is missing or not 64 lowercase hex digits");
  expect_failure(with_line_5(edited(line, [](Json& j) { j["principal"] = "a\x01z"; })),
                 "record 5: principal contains a control character");
  expect_failure(with_line_5(edited(line, [](Json& j) { j["time"] = "2026-11-23T10:00:05Z"; })),
                 "record 5: time is not of the form 2026-11-23T10:00:00.123Z");
  expect_failure(with_line_5(edited(line, [](Json& j) { j["outcome"] = "maybe"; })),
                 "record 5: outcome is neither \"ok\" nor \"error\"");
  expect_failure(with_line_5(edited(line, [](Json& j) { j["version"] = 0; })),
                 "record 5: version is neither null nor an integer from 1 to 4294967295");
}

TEST_CASE("AuditVerifyNeedsTheRightPublicKey") {
  TamperFixture f;
  MemoryHsm other;
  require_ok(other.generate_signing_key(kAuditLabel));
  auto other_key = other.signing_public_key(kAuditLabel);
  REQUIRE(other_key.ok());
  expect_failure(verify_lines(f.lines, *other_key), "checkpoint at 10: signature does not verify");

  for (const std::string& bad : {std::string("not a key"), std::string()}) {
    auto v = audit::Verifier::create(bytes_of(bad));
    REQUIRE_FALSE(v.ok());
    CHECK(v.error().code() == Code::kInvalidArgument);
  }
}

TEST_CASE("AuditVerifyStoreDetectsTamperingInTheDatabase") {
  auto tamper = [](AuditFixture& f, const char* sql) {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(f.db_path().c_str(), &db) == SQLITE_OK);
    char* error = nullptr;
    int rc = sqlite3_exec(db, sql, nullptr, nullptr, &error);
    std::string message = error != nullptr ? error : "";
    sqlite3_free(error);
    sqlite3_close(db);
    REQUIRE_MESSAGE(rc == SQLITE_OK, message);
  };
  {
    TamperFixture f;
    tamper(f,
           "UPDATE audit_records SET record = replace(record, 'client-5', 'mallory') "
           "WHERE seq = 5");
    expect_failure(f.verify_store(), "record 5: hash does not match");
  }
  {
    TamperFixture f;
    tamper(f, "DELETE FROM audit_records WHERE seq = 12");
    expect_failure(f.verify_store(), "record 12 missing (seq jumps from 11 to 13)");
  }
  {
    // Deleted behind the store's back (no foreign keys in this connection), checkpoint kept.
    TamperFixture f;
    tamper(f, "DELETE FROM audit_records WHERE seq > 37");
    expect_failure(f.verify_store(), "checkpoint at 40: record 40 is not in the log before it");
  }
  {
    TamperFixture f;
    tamper(f, "UPDATE audit_records SET record = replace(record, ',', ', ') WHERE seq = 7");
    expect_failure(f.verify_store(), "record 7: the stored text is not in canonical form");
  }
  {
    TamperFixture f;
    tamper(f,
           "UPDATE audit_checkpoints SET checkpoint = "
           "replace(checkpoint, '.100Z', '.101Z') WHERE seq = 30");
    expect_failure(f.verify_store(), "checkpoint at 30: signature does not verify");
  }
}
