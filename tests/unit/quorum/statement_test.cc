// The statement: byte-exact text for every action, and a strict parser that accepts nothing but
// that text.
#include <doctest/doctest.h>

#include <botan/base64.h>

#include "kekd/quorum/statement.h"
#include "unit/quorum/operator_keys.h"

using namespace kekd;
using namespace kekd::quorum;
using namespace kekd::testing;

namespace {

const std::string kHash = "sha256:" + std::string(64, 'a');
constexpr UnixMillis kProposed = 1'795'428'000'000;              // 2026-11-23T10:00:00Z
constexpr UnixMillis kExpires = kProposed + 86'400'000;          // 2026-11-24T10:00:00Z
constexpr UnixMillis kDestroyAfter = kProposed + 2'592'000'000;  // 2026-12-23T10:00:00Z

Statement base(Action action) {
  Statement s;
  s.id = "9c1f0e2ab3d44c5e8f7a1b2c3d4e5f60";
  s.action = action;
  s.key = action == Action::kSetOperators ? "" : "payments";
  s.operator_set = kHash;
  s.threshold = 2;
  s.proposed_by = "admin";
  s.proposed_at = kProposed;
  s.expires_at = kExpires;
  return s;
}

const std::string kTail =
    "operator-set: sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
    "threshold: 2\n"
    "proposed-by: admin\n"
    "proposed-at: 2026-11-23T10:00:00Z\n"
    "expires-at: 2026-11-24T10:00:00Z\n";

const std::string kHead = "kekd ceremony v1\nid: 9c1f0e2ab3d44c5e8f7a1b2c3d4e5f60\n";

Operator fixed(std::string name, std::string_view spki_base64) {
  auto der = Botan::base64_decode(std::string(spki_base64));
  auto op = operator_from_der(std::move(name), Bytes(der.begin(), der.end()));
  REQUIRE(op.ok());
  return *op;
}

Statement set_operators() {
  Statement s = base(Action::kSetOperators);
  auto set = make_operator_set({fixed("dave", kEd25519SpkiC), fixed("bob", kP256SpkiA)}, 2, false);
  REQUIRE(set.ok());
  s.new_operators = *set;
  return s;
}

const std::string kSetOperatorsText =
    kHead +
    "action: set-operators\n"
    "operator: bob ecdsa-p256 "
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE8FyGtqQj9fdLur8fTvkiBnFtJaFpaxt+"
    "NL7P6DzjRUgusXB1BRxMVshraooI"
    "5EfWyYT9Wo9hstE5n2cDm7nXLQ==\n"
    "operator: dave ed25519 MCowBQYDK2VwAyEANwsBIG7x5cSTqzXwj3/gY5+vNoT3WB5J/IsOqiGjGfM=\n"
    "new-threshold: 2\n" +
    kTail;

struct Example {
  Statement statement;
  std::string text;
};

std::vector<Example> every_action() {
  Statement disable = base(Action::kDisableVersion);
  disable.version = 1;
  Statement enable = base(Action::kEnableVersion);
  enable.version = 12;
  Statement schedule = base(Action::kScheduleDestroyVersion);
  schedule.version = 1;
  schedule.destroy_after = kDestroyAfter;
  Statement cancel = base(Action::kCancelDestroyVersion);
  cancel.version = 3;
  return {
      {base(Action::kCreateKey), kHead + "action: create-key\nkey: payments\n" + kTail},
      {base(Action::kRotateKey), kHead + "action: rotate-key\nkey: payments\n" + kTail},
      {disable, kHead + "action: disable-version\nkey: payments\nversion: 1\n" + kTail},
      {enable, kHead + "action: enable-version\nkey: payments\nversion: 12\n" + kTail},
      {schedule, kHead +
                     "action: schedule-destroy-version\nkey: payments\nversion: 1\n"
                     "destroy-after: 2026-12-23T10:00:00Z\n" +
                     kTail},
      {cancel, kHead + "action: cancel-destroy-version\nkey: payments\nversion: 3\n" + kTail},
      {set_operators(), kSetOperatorsText},
  };
}

std::string replace(std::string text, std::string_view from, std::string_view to) {
  std::size_t at = text.find(from);
  REQUIRE_MESSAGE(at != std::string::npos, from);
  return text.replace(at, from.size(), to);
}

void expect_parse_fails(const std::string& text) {
  auto r = parse_statement(text);
  CHECK_MESSAGE(!r.ok(), "accepted:\n", text);
  if (!r.ok()) {
    CHECK(r.error().code() == Code::kInvalidArgument);
  }
}

}  // namespace

TEST_CASE("StatementTextIsByteExactForEveryAction") {
  for (const Example& e : every_action()) {
    auto text = format_statement(e.statement);
    REQUIRE_MESSAGE(text.ok(), text.error().to_string());
    CHECK(*text == e.text);
  }
}

TEST_CASE("StatementMatchesTheExampleOfTheDesign") {
  // DESIGN §5 and docs/ceremony-formats.md, with the hash filled in.
  Statement s = base(Action::kScheduleDestroyVersion);
  s.version = 1;
  s.destroy_after = kDestroyAfter;
  CHECK(*format_statement(s) ==
        "kekd ceremony v1\n"
        "id: 9c1f0e2ab3d44c5e8f7a1b2c3d4e5f60\n"
        "action: schedule-destroy-version\n"
        "key: payments\n"
        "version: 1\n"
        "destroy-after: 2026-12-23T10:00:00Z\n"
        "operator-set: sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
        "threshold: 2\n"
        "proposed-by: admin\n"
        "proposed-at: 2026-11-23T10:00:00Z\n"
        "expires-at: 2026-11-24T10:00:00Z\n");
}

TEST_CASE("ParseStatementRoundTripsEveryAction") {
  for (const Example& e : every_action()) {
    auto parsed = parse_statement(e.text);
    REQUIRE_MESSAGE(parsed.ok(), parsed.error().to_string());
    CHECK(*parsed == e.statement);
  }
}

TEST_CASE("FormatStatementFailsForFieldsTheActionDoesNotTake") {
  auto expect_invalid = [](const Statement& s) {
    auto r = format_statement(s);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == Code::kInvalidArgument);
  };
  Statement with_version = base(Action::kCreateKey);
  with_version.version = 1;
  expect_invalid(with_version);
  Statement no_version = base(Action::kDisableVersion);
  expect_invalid(no_version);
  Statement zero_version = base(Action::kDisableVersion);
  zero_version.version = 0;
  expect_invalid(zero_version);
  Statement destroy_without = base(Action::kScheduleDestroyVersion);
  destroy_without.version = 1;
  expect_invalid(destroy_without);
  Statement destroy_with = base(Action::kDisableVersion);
  destroy_with.version = 1;
  destroy_with.destroy_after = kDestroyAfter;
  expect_invalid(destroy_with);
  Statement set_with_key = set_operators();
  set_with_key.key = "payments";
  expect_invalid(set_with_key);
  Statement set_without_operators = base(Action::kSetOperators);
  expect_invalid(set_without_operators);
  Statement rotate_with_operators = set_operators();
  rotate_with_operators.action = Action::kRotateKey;
  rotate_with_operators.key = "payments";
  expect_invalid(rotate_with_operators);
  Statement bad_key = base(Action::kCreateKey);
  bad_key.key = "Payments";
  expect_invalid(bad_key);
  Statement fraction = base(Action::kCreateKey);
  fraction.proposed_at += 1;
  expect_invalid(fraction);
  Statement backwards = base(Action::kCreateKey);
  backwards.expires_at = backwards.proposed_at;
  expect_invalid(backwards);
  Statement bad_id = base(Action::kCreateKey);
  bad_id.id = "9C1F0E2AB3D44C5E8F7A1B2C3D4E5F60";
  expect_invalid(bad_id);
  Statement bad_hash = base(Action::kCreateKey);
  bad_hash.operator_set = "sha256:abc";
  expect_invalid(bad_hash);
  Statement spaced_principal = base(Action::kCreateKey);
  spaced_principal.proposed_by = "the admin";
  expect_invalid(spaced_principal);
  Statement no_threshold = base(Action::kCreateKey);
  no_threshold.threshold = 0;
  expect_invalid(no_threshold);
}

TEST_CASE("ParseStatementFailsForEveryMalformedVariant") {
  const std::string create = kHead + "action: create-key\nkey: payments\n" + kTail;
  const std::string disable =
      kHead + "action: disable-version\nkey: payments\nversion: 1\n" + kTail;
  const std::string schedule = kHead +
                               "action: schedule-destroy-version\nkey: payments\nversion: 1\n"
                               "destroy-after: 2026-12-23T10:00:00Z\n" +
                               kTail;
  const std::string dave_line =
      "operator: dave ed25519 MCowBQYDK2VwAyEANwsBIG7x5cSTqzXwj3/gY5+vNoT3WB5J/IsOqiGjGfM=\n";
  const std::vector<std::string> variants = {
      // Framing.
      "",
      "\n",
      create.substr(0, create.size() - 1),
      create + "\n",
      "\n" + create,
      replace(create, "\n", "\r\n"),
      replace(create, "kekd ceremony v1", "kekd ceremony v2"),
      replace(create, "kekd ceremony v1", "KEKD ceremony v1"),
      create.substr(create.find('\n') + 1),
      create + "note: extra\n",
      replace(create, "key: payments\n", "key: payments\nkey: payments\n"),
      replace(create, "key: payments", "key: payments "),
      replace(create, "key: payments", "key:  payments"),
      replace(create, "key: payments", "key:payments"),
      replace(create, "key: payments", "key : payments"),
      replace(create, "key: payments", "Key: payments"),
      replace(create, "key: payments", "key:\tpayments"),
      replace(create, "key: payments", std::string("key: pay\0ments", 14)),
      replace(create, "key: payments", "key: paym\xc3\xa9nts"),
      create + std::string(70 * 1024, '#'),
      // Order and presence.
      replace(create, "id: 9c1f0e2ab3d44c5e8f7a1b2c3d4e5f60\naction: create-key\n",
              "action: create-key\nid: 9c1f0e2ab3d44c5e8f7a1b2c3d4e5f60\n"),
      replace(create, "threshold: 2\nproposed-by: admin\n", "proposed-by: admin\nthreshold: 2\n"),
      replace(create, "key: payments\n", ""),
      replace(create, "threshold: 2\n", ""),
      replace(create, "expires-at: 2026-11-24T10:00:00Z\n", ""),
      replace(create, "proposed-by: admin\n", ""),
      replace(create, "key: payments\n", "key: payments\nversion: 1\n"),
      replace(disable, "version: 1\n", ""),
      replace(disable, "version: 1\n", "version: 1\ndestroy-after: 2026-12-23T10:00:00Z\n"),
      replace(schedule, "destroy-after: 2026-12-23T10:00:00Z\n", ""),
      replace(create, "key: payments\n", "key: payments\n" + dave_line + "new-threshold: 1\n"),
      // Values.
      replace(create, "id: 9c1f0e2ab3d44c5e8f7a1b2c3d4e5f60",
              "id: 9C1F0E2AB3D44C5E8F7A1B2C3D4E5F60"),
      replace(create, "id: 9c1f0e2ab3d44c5e8f7a1b2c3d4e5f60",
              "id: 9c1f0e2ab3d44c5e8f7a1b2c3d4e5f6"),
      replace(create, "id: 9c1f0e2ab3d44c5e8f7a1b2c3d4e5f60",
              "id: 9c1f0e2ab3d44c5e8f7a1b2c3d4e5f600"),
      replace(create, "id: 9c1f0e2ab3d44c5e8f7a1b2c3d4e5f60",
              "id: 9c1f0e2ab3d44c5e8f7a1b2c3d4e5fzz"),
      replace(create, "id: 9c1f0e2ab3d44c5e8f7a1b2c3d4e5f60", "id: "),
      replace(create, "create-key", "make-key"),
      replace(create, "create-key", "Create-Key"),
      replace(create, "key: payments", "key: Payments"),
      replace(create, "key: payments", "key: " + std::string(65, 'a')),
      replace(create, "key: payments", "key: "),
      replace(disable, "version: 1", "version: 01"),
      replace(disable, "version: 1", "version: 0"),
      replace(disable, "version: 1", "version: +1"),
      replace(disable, "version: 1", "version: -1"),
      replace(disable, "version: 1", "version: 1.0"),
      replace(disable, "version: 1", "version: 4294967296"),
      replace(create, "threshold: 2", "threshold: 0"),
      replace(create, "threshold: 2", "threshold: 02"),
      replace(create, "operator-set: sha256:aaaa", "operator-set: sha256:AAAA"),
      replace(create, "operator-set: sha256:aaaa", "operator-set: sha512:aaaa"),
      replace(create, "operator-set: sha256:aaaa", "operator-set: sha256:aaa"),
      replace(create, "proposed-by: admin", "proposed-by: the admin"),
      replace(create, "proposed-by: admin", "proposed-by: "),
      replace(create, "2026-11-23T10:00:00Z", "2026-11-23T10:00:00.000Z"),
      replace(create, "2026-11-23T10:00:00Z", "2026-11-23T10:00:00+00:00"),
      replace(create, "2026-11-23T10:00:00Z", "2026-11-23 10:00:00Z"),
      replace(create, "2026-11-23T10:00:00Z", "2026-11-31T10:00:00Z"),
      replace(create, "2026-11-23T10:00:00Z", "2026-11-23t10:00:00z"),
      replace(create, "2026-11-24T10:00:00Z", "2026-11-23T10:00:00Z"),  // expires = proposed
      replace(create, "2026-11-24T10:00:00Z", "2026-11-22T10:00:00Z"),  // expires before
      replace(schedule, "2026-12-23T10:00:00Z", "soon"),
      // set-operators.
      replace(kSetOperatorsText, "new-threshold: 2\n", ""),
      replace(kSetOperatorsText, "new-threshold: 2", "new-threshold: 3"),
      replace(kSetOperatorsText, "new-threshold: 2", "new-threshold: 0"),
      replace(kSetOperatorsText, dave_line, ""),  // bob alone, threshold 2
      replace(replace(kSetOperatorsText, dave_line, ""), "action: set-operators\n",
              "action: set-operators\n" + dave_line),  // unsorted
      replace(kSetOperatorsText, dave_line, dave_line + dave_line),
      replace(kSetOperatorsText, "dave ed25519", "dave ecdsa-p256"),
      replace(kSetOperatorsText, "dave ed25519", "dave rsa"),
      replace(kSetOperatorsText, "GjGfM=", "GjGfM"),
      replace(kSetOperatorsText, "GjGfM=", "GjGfN="),  // same bytes, non-zero padding bits
      replace(kSetOperatorsText, "action: set-operators\n", "action: set-operators\nkey: x\n"),
      replace(kSetOperatorsText, "new-threshold: 2\n", "new-threshold: 2\n" + dave_line),
      replace(kSetOperatorsText, "new-threshold", "threshold"),
  };
  for (const std::string& text : variants) {
    expect_parse_fails(text);
  }
}

TEST_CASE("ParseStatementNeverReadsTwoTextsAsTheSameFields") {
  // Any byte changed gives a different valid statement or none; never the same fields again
  // (the canonical form is unique).
  const Example e = every_action()[4];
  for (std::size_t i = 0; i < e.text.size(); ++i) {
    std::string changed = e.text;
    changed[i] = changed[i] == 'x' ? 'y' : 'x';
    auto r = parse_statement(changed);
    if (r.ok()) {
      CHECK_MESSAGE(*r != e.statement, "byte ", i);
      CHECK(*format_statement(*r) == changed);
    }
  }
}
