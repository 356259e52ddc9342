#include "kekd/api/grants.h"

#include <doctest/doctest.h>

using namespace kekd;
using namespace kekd::api;

TEST_CASE("PatternMatchesExactNamesAndStars") {
  CHECK(pattern_matches("demo", "demo"));
  CHECK_FALSE(pattern_matches("demo", "demo2"));
  CHECK(pattern_matches("pay*", "payments"));
  CHECK(pattern_matches("pay*", "pay"));
  CHECK_FALSE(pattern_matches("pay*", "demo"));
  CHECK(pattern_matches("*", "anything"));
  CHECK(pattern_matches("a*c*e", "abcde"));
  CHECK_FALSE(pattern_matches("a*c*e", "abcdf"));
  CHECK(pattern_matches("*-prod", "billing-prod"));
  CHECK_FALSE(pattern_matches("*-prod", "billing-prod2"));
}

TEST_CASE("GrantsAllowOnlyNamedOperationsOnMatchingKeys") {
  auto grants = parse_grants(R"([{"key":"pay*","operations":["wrap","unwrap"]},
                                 {"key":"demo","operations":["describe"]}])");
  REQUIRE(grants.ok());
  CHECK(allows(*grants, "payments", Operation::kWrap));
  CHECK(allows(*grants, "payments", Operation::kUnwrap));
  CHECK_FALSE(allows(*grants, "payments", Operation::kDatakey));
  CHECK_FALSE(allows(*grants, "demo", Operation::kWrap));
  CHECK(allows(*grants, "demo", Operation::kDescribe));
  CHECK_FALSE(allows({}, "demo", Operation::kDescribe));
  CHECK(
      grants_to_json(*grants) ==
      R"([{"key":"pay*","operations":["wrap","unwrap"]},{"key":"demo","operations":["describe"]}])");
}

TEST_CASE("ParseGrantsFailsForMalformedInput") {
  for (const char* bad :
       {"{}", "[1]", R"([{"key":"Pay","operations":["wrap"]}])",
        R"([{"key":"pay","operations":[]}])", R"([{"key":"pay","operations":["export"]}])",
        R"([{"key":"pay","operations":["wrap"],"x":1}])", R"([{"operations":["wrap"]}])",
        "not json"}) {
    CAPTURE(bad);
    auto g = parse_grants(bad);
    REQUIRE_FALSE(g.ok());
    CHECK(g.error().code() == Code::kInvalidArgument);
  }
}
