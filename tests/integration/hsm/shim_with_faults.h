// kekd's HSM layer on the PKCS#11 shim (tests/pkcs11_shim), for the integration tests that count
// the module's calls or fail them: included by the test files of tests/integration/hsm that do.
#pragma once

#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <string>

#include "kekd/hsm/pkcs11_hsm.h"
#include "support/token_fixture.h"

namespace kekd::testing {

// Sets an environment variable for the shim, which reads it when it is loaded, until the end of
// the scope (each test case runs in its own process under ctest, but not in a run of the binary).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() { ::unsetenv(name_); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
};

inline std::unique_ptr<hsm::Pkcs11Hsm> open_hsm(hsm::Pkcs11Config config) {
  auto opened = hsm::Pkcs11Hsm::open(std::move(config));
  REQUIRE_MESSAGE(opened.ok(), opened.error().to_string());
  return std::move(*opened);
}

// The shim's call counts (KEKD_SHIM_STATS), written at each C_Finalize: function -> calls.
inline std::map<std::string, unsigned long long> shim_calls(const std::string& path) {
  std::map<std::string, unsigned long long> calls;
  std::ifstream in(path);
  std::string function;
  unsigned long long n = 0, injected = 0;
  while (in >> function >> n >> injected) calls[function] = n;
  return calls;
}

// kekd on the PKCS#11 shim, with faults switched by its control file (read at every call) and its
// call counts written at each C_Finalize.
class ShimWithFaults {
 public:
  explicit ShimWithFaults(const TokenFixture& token)
      : control_(token.dir() + "/shim-control"),
        stats_(token.dir() + "/shim-stats"),
        control_env_("KEKD_SHIM_CONTROL", control_),
        interval_env_("KEKD_SHIM_CONTROL_INTERVAL_MS", "0"),
        stats_env_("KEKD_SHIM_STATS", stats_) {
    std::ofstream(control_) << "";
  }

  // `sessions` sessions, re-initialised after `reinitialize_after` transient objects (0: never).
  std::unique_ptr<hsm::Pkcs11Hsm> open(const TokenFixture& token, std::uint64_t reinitialize_after,
                                       std::size_t sessions = 2) const {
    hsm::Pkcs11Config config = token.config(sessions);
    config.module_path = KEKD_SHIM_MODULE;
    config.reinitialize_after = reinitialize_after;
    return open_hsm(std::move(config));
  }

  // Replaces the rules at once (a new file renamed over the old one: never read half written).
  void set_rules(const std::string& rules) const {
    { std::ofstream(control_ + ".new") << rules; }
    REQUIRE(std::rename((control_ + ".new").c_str(), control_.c_str()) == 0);
  }

  std::map<std::string, unsigned long long> calls() const { return shim_calls(stats_); }

 private:
  std::string control_, stats_;
  ScopedEnv control_env_, interval_env_, stats_env_;
};

}  // namespace kekd::testing
