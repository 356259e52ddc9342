#include "kekd/daemon/operators_file.h"

#include <toml++/toml.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace kekd::daemon {
namespace {

Error bad(const std::string& path, const std::string& what) {
  return Error(Code::kInvalidArgument, "operators file " + path + ": " + what);
}

}  // namespace

Result<std::vector<quorum::Operator>> load_operators_file(const std::string& path) {
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    std::ostringstream where;
    where << e.source().begin;
    return bad(path, std::string(e.description()) + " at " + where.str());
  }
  for (const auto& [key, node] : root) {
    if (key.str() != "operator") return bad(path, "unknown key '" + std::string(key.str()) + "'");
  }
  const toml::array* tables = root["operator"].as_array();
  if (tables == nullptr || tables->empty()) {
    return bad(path, "no [[operator]] tables");
  }
  const std::filesystem::path base = std::filesystem::absolute(path).parent_path();
  std::vector<quorum::Operator> operators;
  for (const toml::node& node : *tables) {
    const toml::table* table = node.as_table();
    if (table == nullptr) return bad(path, "'operator' must be an array of tables");
    for (const auto& [key, value] : *table) {
      if (key.str() != "name" && key.str() != "public_key") {
        return bad(path, "unknown key '" + std::string(key.str()) + "' in [[operator]]");
      }
    }
    std::optional<std::string> name = (*table)["name"].value<std::string>();
    std::optional<std::string> key = (*table)["public_key"].value<std::string>();
    if (!name || !key) return bad(path, "each [[operator]] needs name and public_key");
    std::string pem = *key;
    if (pem.find("-----BEGIN") == std::string::npos) {
      std::filesystem::path file =
          std::filesystem::path(pem).is_absolute() ? std::filesystem::path(pem) : base / pem;
      std::ifstream in(file);
      if (!in) return bad(path, "cannot read public key file " + file.string());
      std::stringstream text;
      text << in.rdbuf();
      pem = text.str();
    }
    Result<quorum::Operator> op = quorum::parse_operator(*name, pem);
    if (!op.ok()) return bad(path, "operator '" + *name + "': " + op.error().message());
    operators.push_back(std::move(*op));
  }
  return operators;
}

}  // namespace kekd::daemon
