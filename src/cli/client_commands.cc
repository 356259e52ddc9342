// Application clients and their grants (DESIGN §6), with the admin credential.
#include "commands.h"
#include "output.h"

namespace kekd::cli {
namespace {

using Json = nlohmann::json;

// "KEY:op[,op...]" -> {"key": KEY, "operations": [...]}. Which operations exist is kekd's to say;
// only the shape is checked here.
Json parse_grant(const std::string& text) {
  std::size_t colon = text.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
    throw CLI::ValidationError("--grant", "'" + text + "' is not KEY:op[,op...]");
  }
  Json operations = Json::array();
  std::string ops = text.substr(colon + 1);
  std::size_t start = 0;
  while (true) {
    std::size_t comma = ops.find(',', start);
    std::string op =
        ops.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (op.empty()) throw CLI::ValidationError("--grant", "'" + text + "' has an empty operation");
    operations.push_back(op);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return {{"key", text.substr(0, colon)}, {"operations", operations}};
}

}  // namespace

void add_client_commands(CLI::App& app, Action& slot) {
  CLI::App* clients = app.add_subcommand("clients", "application clients (admin)");
  clients->require_subcommand(1);

  auto grants = std::make_shared<Json>(Json::array());
  CLI::App* create = clients->add_subcommand(
      "create", "create a client; its token is shown once. Without --grant it can do nothing");
  create
      ->add_option_function<std::vector<std::string>>(
          "--grant",
          [grants](const std::vector<std::string>& items) {
            for (const std::string& item : items) grants->push_back(parse_grant(item));
          },
          "KEY:op[,op...], KEY a name or a pattern like 'pay*', op one of datakey, wrap, unwrap, "
          "rewrap, describe (repeatable)")
      ->type_name("KEY:OPS")
      ->allow_extra_args(false);
  on_run(create, slot, [grants](KekdClient& client) -> Status {
    Json body = {{"grants", *grants}};
    KEKD_ASSIGN_OR_RETURN(Json answer, client.call("POST", "/v1/clients", &body));
    return print_json(answer);
  });

  CLI::App* list = clients->add_subcommand("list", "list the clients and their grants");
  on_run(list, slot, [](KekdClient& client) -> Status {
    KEKD_ASSIGN_OR_RETURN(Json answer, client.call("GET", "/v1/clients", nullptr));
    return print_json(answer);
  });

  auto id = std::make_shared<std::string>();
  CLI::App* remove = clients->add_subcommand("delete", "delete a client: its token stops working");
  remove->add_option("id", *id, "the client id")->required();
  on_run(remove, slot, [id](KekdClient& client) -> Status {
    KEKD_ASSIGN_OR_RETURN(Json answer,
                          client.call("DELETE", "/v1/clients/" + path_segment(*id), nullptr));
    return print_json(answer);
  });
}

}  // namespace kekd::cli
