#include "context_option.h"

namespace kekd::cli {

std::shared_ptr<ContextMap> add_context_option(CLI::App* command) {
  auto context = std::make_shared<ContextMap>();
  command
      ->add_option_function<std::vector<std::string>>(
          "--context",
          [context](const std::vector<std::string>& items) {
            for (const std::string& item : items) {
              // Split at the first '=': values may contain '=' (base64, URLs), keys may not.
              std::size_t eq = item.find('=');
              if (eq == std::string::npos || eq == 0) {
                throw CLI::ValidationError("--context", "'" + item + "' is not KEY=VALUE");
              }
              if (!context->emplace(item.substr(0, eq), item.substr(eq + 1)).second) {
                throw CLI::ValidationError("--context",
                                           "'" + item.substr(0, eq) + "' is given twice");
              }
            }
          },
          "encryption context pair (repeatable); unwrapping needs the same pairs")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false);
  return context;
}

void put_context(nlohmann::json& body, const ContextMap& context) {
  if (!context.empty()) body["context"] = context;
}

}  // namespace kekd::cli
