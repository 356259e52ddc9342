// The encryption context on the command line: `--context k=v`, repeatable.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <string>

namespace kekd::cli {

using ContextMap = std::map<std::string, std::string>;

// Adds --context to `command`; the map is filled while parsing, which refuses an item without
// '=' or a key given twice (usage errors).
std::shared_ptr<ContextMap> add_context_option(CLI::App* command);

// Sets body["context"] when the map is not empty; kekd treats no context and {} alike.
void put_context(nlohmann::json& body, const ContextMap& context);

}  // namespace kekd::cli
