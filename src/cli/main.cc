// kekctl: the command-line client of kekd's native REST API (docs/kekctl.md).
//
// Exit status: 0 on success, 1 when kekd answers with an error or cannot be reached, 2 for a
// command line that does not parse.
#include <CLI/CLI.hpp>

#include <iostream>

#include "commands.h"
#include "connection.h"

int main(int argc, char** argv) {
  using namespace kekd::cli;

  CLI::App app{"kekctl: the command-line client of kekd"};
  // Global options may come before or after the subcommand (set before adding subcommands: they
  // inherit it).
  app.fallthrough();
  app.require_subcommand(1);
  app.set_version_flag("--version", "kekctl " KEKD_VERSION);
  app.footer(
      "Credential: env KEKD_TOKEN, or a file named by --token-file or env KEKD_TOKEN_FILE.\n"
      "Exit status: 0 ok, 1 error from or reaching kekd, 2 usage. See docs/kekctl.md.\n");

  ConnectionOptions options;
  add_connection_options(app, options);
  Action action;
  add_key_commands(app, action);
  add_client_commands(app, action);
  add_seal_commands(app, action);
  add_audit_commands(app, action);
  add_backup_commands(app, action);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11's own codes (100 and up) would mean nothing to a script; usage errors are 2.
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (!action) {
    std::cerr << "kekctl: no command given\n" << app.help();
    return 2;
  }

  KekdClient client(resolve_connection(options));
  kekd::Status status = action(client);
  if (!status.ok()) {
    std::cerr << "kekctl: " << status.error().message() << "\n";
    return 1;
  }
  return 0;
}
