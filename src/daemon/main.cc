// kekd: the daemon binary. `kekd init` prepares a deployment once; `kekd serve` runs it.
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <iostream>

#include "kekd/daemon/commands.h"
#include "kekd/daemon/process_memory.h"

int main(int argc, char** argv) {
  // Logs go to stderr as one line per event, UTC timestamps; nothing secret is ever logged.
  spdlog::set_default_logger(spdlog::stderr_logger_mt("kekd"));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);

  CLI::App app{"kekd: an HSM-backed key service with quorum-controlled keys"};
  app.require_subcommand(1);

  kekd::daemon::InitOptions init;
  CLI::App* init_cmd = app.add_subcommand("init", "prepare a deployment (once)");
  init_cmd->add_option("--config", init.config_path, "kekd.toml")->required();
  init_cmd->add_option("--operators", init.operators_path, "operators file (TOML)")->required();
  init_cmd->add_option("--threshold", init.threshold, "approvals needed (M of N)")->required();
  init_cmd
      ->add_option("--admin-credential-out", init.admin_credential_out,
                   "new file for the admin bearer token (mode 0600)")
      ->required();
  init_cmd->add_flag("--force-single-approver", init.force_single_approver,
                     "allow threshold 1 with more than one operator");

  std::string serve_config;
  CLI::App* serve_cmd = app.add_subcommand("serve", "run the daemon");
  serve_cmd->add_option("--config", serve_config, "kekd.toml")->required();

  CLI11_PARSE(app, argc, argv);

  // Both commands read the PIN and handle secrets: no core dumps from here on.
  kekd::Status status = kekd::daemon::protect_process_memory();
  if (status.ok()) {
    status =
        init_cmd->parsed() ? kekd::daemon::run_init(init) : kekd::daemon::run_serve(serve_config);
  }
  if (!status.ok()) {
    std::cerr << "kekd: " << status.error().to_string() << "\n";
    return status.error().code() == kekd::Code::kInvalidArgument ? 2 : 1;
  }
  return 0;
}
