#include "support/token_fixture.h"

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include "kekd/hsm/pin.h"

namespace kekd::testing {

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string run_command(const std::string& command, int* status) {
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) {
    throw std::runtime_error("popen failed: " + command);
  }
  std::string out;
  char buffer[4096];
  std::size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) {
    out.append(buffer, n);
  }
  int rc = ::pclose(pipe);
  int exit_code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  if (status != nullptr) {
    *status = exit_code;
  } else if (exit_code != 0) {
    throw std::runtime_error("command failed (" + std::to_string(exit_code) + "): " + command +
                             "\n" + out);
  }
  return out;
}

TokenFixture::TokenFixture() {
  run_command("bash " + shell_quote(std::string(KEKD_SOURCE_DIR) + "/scripts/softhsm-token.sh") +
              " " + shell_quote(dir_.file("token")) + " kekd >/dev/null");
  ::setenv("SOFTHSM2_CONF", conf().c_str(), 1);
}

hsm::Pkcs11Config TokenFixture::config(std::size_t sessions) const {
  Result<SecretBytes> pin = hsm::load_pin_from_file(pin_file());
  if (!pin.ok()) {
    throw std::runtime_error(pin.error().to_string());
  }
  hsm::Pkcs11Config config;
  config.module_path = KEKD_SOFTHSM_MODULE;
  config.token_label = "kekd";
  config.pin = std::move(*pin);
  config.sessions = sessions;
  return config;
}

std::unique_ptr<hsm::Pkcs11Hsm> TokenFixture::open_hsm(std::size_t sessions) const {
  Result<std::unique_ptr<hsm::Pkcs11Hsm>> opened = hsm::Pkcs11Hsm::open(config(sessions));
  if (!opened.ok()) {
    throw std::runtime_error(opened.error().to_string());
  }
  return std::move(*opened);
}

}  // namespace kekd::testing
