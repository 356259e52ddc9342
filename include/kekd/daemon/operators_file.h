// The operators file of `kekd init` (documented in hsm-config/operators.example.toml):
//
//   [[operator]]
//   name = "alice"
//   public_key = "operators/alice.pub.pem"   # a path relative to this file, or the PEM itself
#pragma once

#include <string>
#include <vector>

#include "kekd/common/error.h"
#include "kekd/quorum/operator.h"

namespace kekd::daemon {

Result<std::vector<quorum::Operator>> load_operators_file(const std::string& path);

}  // namespace kekd::daemon
