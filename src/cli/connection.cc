#include "connection.h"

#include <botan/mem_ops.h>

#include <cstdlib>

#include "output.h"

namespace kekd::cli {
namespace {

// A token is "<client-id>.<secret>", a few dozen characters; anything near this is not one.
constexpr std::size_t kMaxTokenFile = 4096;

Result<SecretBytes> read_token_file(const std::string& path) {
  return read_input(path, kMaxTokenFile, "the token file");
}

// Files written by editors and `echo` end with a newline; the token itself has no white space.
void trim(SecretBytes& token) {
  auto space = [](std::uint8_t c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  std::size_t begin = 0;
  while (begin < token.size() && space(token[begin])) ++begin;
  std::size_t end = token.size();
  while (end > begin && space(token[end - 1])) --end;
  SecretBytes trimmed(token.begin() + static_cast<std::ptrdiff_t>(begin),
                      token.begin() + static_cast<std::ptrdiff_t>(end));
  token.swap(trimmed);
}

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? "" : value;
}

}  // namespace

void add_connection_options(CLI::App& app, ConnectionOptions& options) {
  app.add_option("--addr", options.addr, "kekd's URL, http://host:port or https://host:port")
      ->envname("KEKD_ADDR")
      ->capture_default_str()
      ->group("Connection");
  // There is no --token: a command line is readable by every user of the machine (/proc/*/cmdline).
  app.add_option("--token-file", options.token_file,
                 "file holding the bearer token (env KEKD_TOKEN_FILE; the token itself: env "
                 "KEKD_TOKEN)")
      ->group("Connection");
  app.add_option("--cacert", options.cacert, "PEM CA certificates to verify kekd's certificate")
      ->envname("KEKD_CACERT")
      ->group("Connection");
  app.add_option("--cert", options.cert, "PEM client certificate, for kekd's client_ca")
      ->envname("KEKD_CLIENT_CERT")
      ->group("Connection");
  app.add_option("--key", options.key, "PEM private key of the client certificate")
      ->envname("KEKD_CLIENT_KEY")
      ->group("Connection");
}

Result<Connection> resolve_connection(const ConnectionOptions& options) {
  Connection connection;
  connection.endpoint = {options.addr, options.cacert, options.cert, options.key};
  if (connection.endpoint.client_cert.empty() != connection.endpoint.client_key.empty()) {
    return Error(Code::kInvalidArgument, "--cert and --key go together");
  }

  // The most specific source wins: a file named on this command line, then a token in the
  // environment, then a token file named in the environment.
  std::string env_token = env("KEKD_TOKEN");
  std::string file = options.token_file;
  if (file.empty() && env_token.empty()) file = env("KEKD_TOKEN_FILE");
  std::string source;
  if (!file.empty()) {
    KEKD_ASSIGN_OR_RETURN(connection.token, read_token_file(file));
    source = "the token file " + file;
  } else {
    connection.token.assign(env_token.begin(), env_token.end());
    source = "KEKD_TOKEN";
  }
  Botan::secure_scrub_memory(env_token.data(), env_token.size());
  trim(connection.token);
  if (!file.empty() && connection.token.empty()) {
    return Error(Code::kInvalidArgument, "the token file " + file + " is empty");
  }
  for (std::uint8_t c : connection.token) {
    if (c < 0x21 || c > 0x7e) {
      return Error(Code::kInvalidArgument,
                   source + " does not hold a bearer token (it has spaces or control characters)");
    }
  }
  return connection;
}

}  // namespace kekd::cli
