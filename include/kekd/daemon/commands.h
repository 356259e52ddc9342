// The commands of the kekd binary (DESIGN §14).
#pragma once

#include <cstdint>
#include <string>

#include "kekd/common/error.h"

namespace kekd::daemon {

struct InitOptions {
  std::string config_path;
  std::string operators_path;
  std::uint32_t threshold = 0;
  bool force_single_approver = false;
  std::string admin_credential_out;
};

// kekd init: creates kekd's internal token keys, the store, the genesis operator set, and the
// first admin credential (written once, to a new mode-0600 file).
Status run_init(const InitOptions& options);

// kekd serve: runs the daemon until SIGTERM or SIGINT, then drains and exits.
Status run_serve(const std::string& config_path);

}  // namespace kekd::daemon
