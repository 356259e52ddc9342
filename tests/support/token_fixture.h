// A fresh SoftHSM token in its own temporary directory, made by scripts/softhsm-token.sh, for one
// test case. Each test case runs in its own process (doctest_discover_tests), so SOFTHSM2_CONF,
// which SoftHSM reads at C_Initialize, points at this test's token alone.
#pragma once

#include <memory>
#include <string>

#include "kekd/hsm/pkcs11_hsm.h"
#include "support/temp_dir.h"

namespace kekd::testing {

class TokenFixture {
 public:
  TokenFixture();
  TokenFixture(const TokenFixture&) = delete;
  TokenFixture& operator=(const TokenFixture&) = delete;

  const std::string& dir() const { return dir_.path(); }
  std::string pin_file() const { return dir_.file("token/pin"); }
  std::string conf() const { return dir_.file("token/softhsm2.conf"); }

  hsm::Pkcs11Config config(std::size_t sessions = 4) const;
  std::unique_ptr<hsm::Pkcs11Hsm> open_hsm(std::size_t sessions = 4) const;

 private:
  TempDir dir_;
};

// Runs a shell command; returns its stdout, and its exit status through *status if given.
std::string run_command(const std::string& command, int* status = nullptr);

// Quotes s for a POSIX shell.
std::string shell_quote(const std::string& s);

}  // namespace kekd::testing
