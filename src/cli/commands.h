// kekctl's subcommands. Each add_*_commands adds its subcommands to the app; the one given on the
// command line leaves its Action in the slot, and main runs it once parsing is over: the global
// options may follow the subcommand, so nothing can connect to kekd before the whole line is read.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

#include "kekd/common/error.h"
#include "kekd_client.h"

namespace kekd::cli {

// Prints its own output on success; main prints "kekctl: <message>" for an error and exits 1.
using Action = std::function<Status(KekdClient&)>;

// Makes `action` the one to run when `command` is the subcommand given.
inline void on_run(CLI::App* command, Action& slot, Action action) {
  command->callback([&slot, action = std::move(action)] { slot = action; });
}

void add_key_commands(CLI::App& app, Action& slot);     // keys, datakey, wrap, unwrap, rewrap
void add_client_commands(CLI::App& app, Action& slot);  // clients create|list|delete
void add_seal_commands(CLI::App& app, Action& slot);    // sealed files (seal_commands.cc)
void add_audit_commands(CLI::App& app, Action& slot);   // audit export|verify
void add_backup_commands(CLI::App& app, Action& slot);  // backup (backup_command.cc)

}  // namespace kekd::cli
