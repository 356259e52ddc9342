// The operator set: its rules, its canonical text and hash, and the strict parser.
#include <doctest/doctest.h>

#include <botan/base64.h>
#include <botan/hash.h>

#include "kekd/quorum/operator_set.h"
#include "unit/quorum/operator_keys.h"

using namespace kekd;
using namespace kekd::quorum;
using namespace kekd::testing;

namespace {

Operator fixed(std::string name, std::string_view spki_base64) {
  auto der = Botan::base64_decode(std::string(spki_base64));
  auto op = operator_from_der(std::move(name), Bytes(der.begin(), der.end()));
  REQUIRE_MESSAGE(op.ok(), op.error().to_string());
  return *op;
}

// alice, bob, carol, deliberately given out of order.
std::vector<Operator> three() {
  return {fixed("carol", kEd25519SpkiB), fixed("alice", kEd25519SpkiA), fixed("bob", kP256SpkiA)};
}

const std::string kCanonical =
    "kekd operator-set v1\n"
    "threshold: 2\n"
    "operator: alice ed25519 MCowBQYDK2VwAyEAs1/oR1H6p+nqQJ4JUVn308KXa6L2nBSFEH2wge8Ojjg=\n"
    "operator: bob ecdsa-p256 "
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE8FyGtqQj9fdLur8fTvkiBnFtJaFpaxt+"
    "NL7P6DzjRUgusXB1BRxMVshraooI"
    "5EfWyYT9Wo9hstE5n2cDm7nXLQ==\n"
    "operator: carol ed25519 MCowBQYDK2VwAyEAP+1NUrs/9StTEo1nFAb5wah/ntI+bcy7Q/R9HDUmMv4=\n";

void expect_invalid(const Result<OperatorSet>& r, std::string_view fragment = "") {
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code() == Code::kInvalidArgument);
  CHECK_MESSAGE(r.error().message().find(fragment) != std::string::npos, r.error().message());
}

}  // namespace

TEST_CASE("CanonicalSetIsSortedByNameWithBase64Spki") {
  auto set = make_operator_set(three(), 2, false);
  REQUIRE_MESSAGE(set.ok(), set.error().to_string());
  CHECK(set->canonical() == kCanonical);
  CHECK(set->operators[0].name == "alice");
  CHECK(set->find("bob") != nullptr);
  CHECK(set->find("dave") == nullptr);
}

TEST_CASE("SetHashIsSha256OfTheCanonicalText") {
  auto set = make_operator_set(three(), 2, false);
  REQUIRE(set.ok());
  // `printf '...' | sha256sum` of the literal above.
  CHECK(set->hash() == "sha256:93911443365d0990d272f9af83aee4a7037cc8d9d6af551011e209ca1e0eb3c5");
  auto sha256 = Botan::HashFunction::create_or_throw("SHA-256");
  sha256->update(kCanonical);
  CHECK(set->hash() == "sha256:" + to_hex(sha256->final_stdvec()));
}

TEST_CASE("MakeOperatorSetFailsWhenThresholdOutOfRange") {
  expect_invalid(make_operator_set(three(), 0, false), "threshold");
  expect_invalid(make_operator_set(three(), 4, false), "threshold");
  expect_invalid(make_operator_set({}, 1, true), "at least one");
}

TEST_CASE("MakeOperatorSetFailsForThresholdOneWithSeveralUnlessForced") {
  expect_invalid(make_operator_set(three(), 1, false), "force");
  auto forced = make_operator_set(three(), 1, true);
  REQUIRE(forced.ok());
  CHECK(forced->threshold == 1);
  // One operator alone is 1 of 1: nothing to force.
  CHECK(make_operator_set({fixed("alice", kEd25519SpkiA)}, 1, false).ok());
}

TEST_CASE("MakeOperatorSetFailsForDuplicateNamesOrKeys") {
  auto names = three();
  names.push_back(fixed("alice", kEd25519SpkiC));
  expect_invalid(make_operator_set(names, 2, false), "twice");
  auto keys = three();
  keys.push_back(fixed("dave", kEd25519SpkiA));
  expect_invalid(make_operator_set(keys, 2, false), "key of their own");
}

TEST_CASE("MakeOperatorSetFailsForHandMadeOperatorWithWrongAlgorithm") {
  auto ops = three();
  ops[0].algorithm = Algorithm::kEcdsaP256;  // carol's key is Ed25519
  expect_invalid(make_operator_set(ops, 2, false), "algorithm");
}

TEST_CASE("MakeOperatorSetFailsForMoreThanMaxOperators") {
  std::vector<Operator> many;
  for (std::size_t i = 0; i <= kMaxOperators; ++i) {
    many.push_back(OperatorKey::ed25519("op" + std::to_string(i)).op());
  }
  expect_invalid(make_operator_set(many, 2, false), "at most");
}

TEST_CASE("ParseOperatorSetRoundTripsCanonicalText") {
  auto parsed = parse_operator_set(kCanonical);
  REQUIRE_MESSAGE(parsed.ok(), parsed.error().to_string());
  CHECK(*parsed == *make_operator_set(three(), 2, false));
  CHECK(parsed->canonical() == kCanonical);
}

TEST_CASE("ParseOperatorSetAcceptsForcedThresholdOne") {
  auto forced = make_operator_set(three(), 1, true);
  REQUIRE(forced.ok());
  CHECK(parse_operator_set(forced->canonical()).ok());
}

TEST_CASE("ParseOperatorSetFailsForAnyNonCanonicalVariant") {
  auto replace = [](std::string text, std::string_view from, std::string_view to) {
    std::size_t at = text.find(from);
    REQUIRE(at != std::string::npos);
    return text.replace(at, from.size(), to);
  };
  const std::string alice_line =
      "operator: alice ed25519 MCowBQYDK2VwAyEAs1/oR1H6p+nqQJ4JUVn308KXa6L2nBSFEH2wge8Ojjg=\n";
  const std::vector<std::string> variants = {
      "",
      kCanonical.substr(0, kCanonical.size() - 1),  // no final LF
      kCanonical + "\n",                            // blank line at the end
      replace(kCanonical, "\n", "\r\n"),
      replace(kCanonical, "v1", "v2"),
      replace(kCanonical, "threshold: 2", "threshold: 02"),
      replace(kCanonical, "threshold: 2", "threshold:2"),
      replace(kCanonical, "threshold: 2", "threshold: 2 "),
      replace(kCanonical, "threshold: 2", "threshold: 0"),
      replace(kCanonical, "threshold: 2", "threshold: 4"),
      replace(kCanonical, "threshold: 2", "threshold: -2"),
      replace(kCanonical, "threshold: 2\n", ""),
      replace(kCanonical, "ed25519", "Ed25519"),
      replace(kCanonical, "ed25519", "ecdsa-p256"),  // algorithm does not match the key
      replace(kCanonical, "alice ed25519", "alice  ed25519"),
      replace(kCanonical, "Ojjg=", "Ojjg"),  // padding dropped
      replace(kCanonical, "Ojjg=", "Ojjg=="),
      replace(kCanonical, "MCowBQYDK2Vw", "MCow BQYDK2Vw"),
      replace(kCanonical, alice_line, "") + alice_line,  // unsorted
      kCanonical + alice_line,                           // duplicate
      replace(kCanonical, "operator: bob", "operator: Bob"),
      replace(kCanonical, "operator: bob", "member: bob"),
      replace(kCanonical, "alice", "al\tice"),
      replace(kCanonical, "alice",
              "al\xc3\xa9"
              "ce"),
      replace(kCanonical, "alice", std::string("al\0ce", 5)),
      "kekd operator-set v1\nthreshold: 1\n",  // no operators
  };
  for (const std::string& text : variants) {
    auto r = parse_operator_set(text);
    CHECK_MESSAGE(!r.ok(), text);
    if (!r.ok()) {
      CHECK(r.error().code() == Code::kInvalidArgument);
    }
  }
}
