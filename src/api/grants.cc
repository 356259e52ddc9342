#include "kekd/api/grants.h"

#include <nlohmann/json.hpp>

namespace kekd::api {
namespace {

using Json = nlohmann::json;

struct Named {
  std::string_view name;
  Operation op;
};
constexpr Named kOperations[] = {{"datakey", Operation::kDatakey},
                                 {"wrap", Operation::kWrap},
                                 {"unwrap", Operation::kUnwrap},
                                 {"rewrap", Operation::kRewrap},
                                 {"describe", Operation::kDescribe}};

Error bad(const std::string& what) { return Error(Code::kInvalidArgument, "grants: " + what); }

bool valid_pattern(std::string_view p) {
  if (p.empty() || p.size() > 64) return false;
  for (char c : p) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '*';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

std::string_view operation_name(Operation operation) {
  for (const Named& n : kOperations) {
    if (n.op == operation) return n.name;
  }
  return "unknown";
}

bool pattern_matches(std::string_view pattern, std::string_view key) {
  // Iterative glob with '*' only: remember the last star and backtrack to it on a mismatch.
  std::size_t p = 0, k = 0, star = std::string_view::npos, mark = 0;
  while (k < key.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = k;
    } else if (p < pattern.size() && pattern[p] == key[k]) {
      ++p;
      ++k;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      k = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

Result<std::vector<Grant>> parse_grants(std::string_view text) {
  Json j = Json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_array()) return bad("must be an array");
  if (j.size() > 100) return bad("at most 100 grants per client");
  std::vector<Grant> grants;
  for (const Json& g : j) {
    if (!g.is_object()) return bad("each grant is {\"key\", \"operations\"}");
    for (const auto& [name, value] : g.items()) {
      if (name != "key" && name != "operations") return bad("unknown member '" + name + "'");
    }
    auto key = g.find("key");
    auto ops = g.find("operations");
    if (key == g.end() || !key->is_string() || !valid_pattern(key->get<std::string>())) {
      return bad("'key' must be a key name or a pattern of a-z, 0-9, '_', '-' and '*'");
    }
    if (ops == g.end() || !ops->is_array() || ops->empty()) {
      return bad("'operations' must be a non-empty array");
    }
    Grant grant{key->get<std::string>(), 0};
    for (const Json& op : *ops) {
      bool known = false;
      for (const Named& n : kOperations) {
        if (op.is_string() && op.get<std::string>() == n.name) {
          grant.operations |= static_cast<std::uint8_t>(n.op);
          known = true;
        }
      }
      if (!known)
        return bad("unknown operation " + op.dump() +
                   "; use datakey, wrap, unwrap, rewrap, describe");
    }
    grants.push_back(std::move(grant));
  }
  return grants;
}

std::string grants_to_json(const std::vector<Grant>& grants) {
  Json out = Json::array();
  for (const Grant& g : grants) {
    Json ops = Json::array();
    for (const Named& n : kOperations) {
      if (g.operations & static_cast<std::uint8_t>(n.op)) ops.push_back(n.name);
    }
    out.push_back({{"key", g.pattern}, {"operations", std::move(ops)}});
  }
  return out.dump();
}

bool allows(const std::vector<Grant>& grants, std::string_view key, Operation operation) {
  for (const Grant& g : grants) {
    if ((g.operations & static_cast<std::uint8_t>(operation)) && pattern_matches(g.pattern, key)) {
      return true;
    }
  }
  return false;
}

bool allows_on_any_key(const std::vector<Grant>& grants, Operation operation) {
  for (const Grant& g : grants) {
    if ((g.operations & static_cast<std::uint8_t>(operation)) != 0) return true;
  }
  return false;
}

}  // namespace kekd::api
