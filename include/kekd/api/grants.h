// What a client may do (DESIGN §6): a list of grants, each a key name or pattern and the
// operations allowed on the keys it matches. Least privilege: no grants, no access. The admin
// credential manages clients and ceremonies and holds no grants of its own.
//
//   [{"key": "payments", "operations": ["wrap", "unwrap"]},
//    {"key": "pay*", "operations": ["describe"]}]
//
// A pattern is a key name in which '*' stands for any run of name characters (possibly none).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kekd/common/error.h"

namespace kekd::api {

enum class Operation : std::uint8_t {
  kDatakey = 1,
  kWrap = 2,
  kUnwrap = 4,
  kRewrap = 8,
  kDescribe = 16,
};

struct Grant {
  std::string pattern;
  std::uint8_t operations = 0;  // a set of Operation bits
};

// Parses and validates a grants array given as JSON text; kInvalidArgument names the problem.
Result<std::vector<Grant>> parse_grants(std::string_view json);
std::string grants_to_json(const std::vector<Grant>& grants);

// "datakey", "wrap", ...: the name used in grants, metrics and the audit log.
std::string_view operation_name(Operation operation);

bool allows(const std::vector<Grant>& grants, std::string_view key, Operation operation);
bool pattern_matches(std::string_view pattern, std::string_view key);
// True if some grant allows the operation on some key (GenerateRandom, which names no key).
bool allows_on_any_key(const std::vector<Grant>& grants, Operation operation);

}  // namespace kekd::api
