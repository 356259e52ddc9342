// Where the token's user PIN comes from: a file only its owner can read, or an environment
// variable. Never from the command line (argv is visible to every user of the host).
#pragma once

#include <string>

#include "kekd/common/bytes.h"
#include "kekd/common/error.h"

namespace kekd::hsm {

// Reads the PIN from path, without a trailing newline. Refuses (kFailedPrecondition) a file that
// its group or others may read or write, and an empty PIN (kInvalidArgument).
Result<SecretBytes> load_pin_from_file(const std::string& path);

// Reads the PIN from the environment variable and removes the variable from the environment so
// that processes kekd starts do not inherit it. kInvalidArgument if unset or empty.
Result<SecretBytes> load_pin_from_env(const std::string& variable);

}  // namespace kekd::hsm
