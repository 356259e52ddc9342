// Where kekctl talks to and with which credential: the global options and their environment
// variables, resolved once the whole command line has been parsed.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "kekd/api/http_client.h"
#include "kekd/common/bytes.h"
#include "kekd/common/error.h"

namespace kekd::cli {

inline constexpr const char* kDefaultAddr = "http://127.0.0.1:8200";

struct Connection {
  api::Endpoint endpoint;
  SecretBytes token;  // the bearer token <client-id>.<secret>; empty = none
};

// The global options as given; bound to the CLI11 options by add_connection_options.
struct ConnectionOptions {
  std::string addr = kDefaultAddr;
  std::string token_file;  // --token-file only; KEKD_TOKEN_FILE is read by resolve_connection
  std::string cacert;
  std::string cert;
  std::string key;
};

void add_connection_options(CLI::App& app, ConnectionOptions& options);

// Reads the token (KEKD_TOKEN, or the token file) and checks it can go into a header. The
// messages name the file, never the token.
Result<Connection> resolve_connection(const ConnectionOptions& options);

}  // namespace kekd::cli
