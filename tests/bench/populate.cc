// kekd_bench_populate: fills an initialised deployment with many KEK versions, for the start-up
// measurement of scripts/bench.sh (docs/performance.md). Ceremonies through the API would need
// M signatures per version; this program instead opens the deployment's store and token as
// `kekd serve` does (kekd.toml: store path, module, token, PIN) and applies test mandates
// (tests/support/test_mandate.h) to a keyring over them, so every version is what a ceremony
// makes: a KEK in the token (kekd:<name>:<version>) and its record in the store.
//
//   kekd_bench_populate --config kekd.toml [--keys 100] [--versions 10] [--prefix bench]
//
// Creates keys <prefix>-0000 .. <prefix>-<keys-1>, each with <versions> versions (version 1 by a
// create-key mandate, the others by rotate-key). Keys that already exist are rotated up to the
// count, so a second run adds nothing. kekd must not be running on the deployment: its keyring
// caches the store and would not see these versions. Not for a deployment that serves anyone:
// these versions have no ceremony behind them and no audit record.
//
// Prints one JSON line: {"keys":100,"versions_per_key":10,"created":1000,"seconds":12.3}

#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <string>

#include "kekd/daemon/config.h"
#include "kekd/daemon/deployment.h"
#include "kekd/keys/keyring.h"
#include "kekd/store/sqlite_store.h"
#include "support/test_mandate.h"

namespace {

using kekd::testing::MandateForTests;

std::string key_name(const std::string& prefix, int i) {
  char digits[16];
  std::snprintf(digits, sizeof digits, "%04d", i);
  return prefix + "-" + digits;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  int keys = 100;
  int versions = 10;
  std::string prefix = "bench";
  CLI::App app{"Adds KEK versions to a kekd deployment through test mandates (benchmarks only)"};
  app.add_option("--config", config_path, "the deployment's kekd.toml")->required();
  app.add_option("--keys", keys, "number of keys")->check(CLI::Range(1, 100000));
  app.add_option("--versions", versions, "versions per key")->check(CLI::Range(1, 10000));
  app.add_option("--prefix", prefix, "key names are <prefix>-0000, <prefix>-0001, ...");
  CLI11_PARSE(app, argc, argv);

  auto fail = [](const kekd::Error& e) {
    std::fprintf(stderr, "kekd_bench_populate: %s\n", e.to_string().c_str());
    return 1;
  };
  spdlog::set_level(spdlog::level::warn);

  auto config = kekd::daemon::load_config(config_path);
  if (!config.ok()) return fail(config.error());
  auto hsm = kekd::daemon::open_hsm(*config);
  if (!hsm.ok()) return fail(hsm.error());
  auto store = kekd::store::SqliteStore::open(config->store_path);
  if (!store.ok()) return fail(store.error());
  auto keyring = kekd::keys::Keyring::open(**hsm, **store);
  if (!keyring.ok()) return fail(keyring.error());

  const auto begin = std::chrono::steady_clock::now();
  int created = 0;
  for (int i = 0; i < keys; ++i) {
    const std::string name = key_name(prefix, i);
    std::uint32_t have = 0;
    if (auto info = (*keyring)->describe(name); info.ok()) {
      have = info->record.versions.back().version;
    } else {
      auto made = (*keyring)->apply(MandateForTests::create_key(name));
      if (!made.ok()) return fail(made.error());
      have = 1;
      ++created;
    }
    for (; have < static_cast<std::uint32_t>(versions); ++have) {
      auto rotated = (*keyring)->apply(MandateForTests::rotate_key(name));
      if (!rotated.ok()) return fail(rotated.error());
      ++created;
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  std::printf("{\"keys\":%d,\"versions_per_key\":%d,\"created\":%d,\"seconds\":%.3f}\n", keys,
              versions, created, seconds);
  return 0;
}
