// Two processes on one store file: this test's SqliteStore and kekd_store_probe, run while the
// test's store is still open (several kekd processes on one host share the file this way).
#include <doctest/doctest.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <filesystem>
#include <string>

#include "kekd/store/sqlite_store.h"
#include "support/temp_dir.h"

namespace kekd::store {
namespace {

using kekd::testing::TempDir;

std::string shell_quote(const std::string& arg) {
  std::string quoted = "'";
  for (char c : arg) {
    quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  }
  return quoted + "'";
}

struct ProbeRun {
  int exit_code = -1;
  std::string output;  // stdout, plus stderr when asked for
};

// Runs a shell command line and collects what it prints on stdout.
ProbeRun run_shell(const std::string& command) {
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  ProbeRun run;
  char buffer[512];
  std::size_t n = 0;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) {
    run.output.append(buffer, n);
  }
  int status = pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

ProbeRun run_probe(const std::string& args, bool with_stderr = false) {
  return run_shell(shell_quote(KEKD_STORE_PROBE) + " " + args + (with_stderr ? " 2>&1" : ""));
}

KeyRecord make_key(const std::string& name, const std::string& id) {
  KeyVersionRecord v;
  v.version = 1;
  v.created_at = 1'700'000'000'000;
  v.updated_at = 1'700'000'000'000;
  KeyRecord key;
  key.name = name;
  key.id = id;
  key.created_at = 1'700'000'000'000;
  key.versions.push_back(v);
  return key;
}

std::unique_ptr<SqliteStore> open_store(const std::string& path) {
  auto store = SqliteStore::open(path);
  REQUIRE_MESSAGE(store.ok(), store.error().to_string());
  return std::move(store).value();
}

void require_ok(const Status& status) { REQUIRE_MESSAGE(status.ok(), status.error().to_string()); }

TEST_CASE("ProbeListPrintsKeysWrittenByThisProcess") {
  TempDir dir;
  std::string path = dir.file("kekd.db");
  auto store = open_store(path);
  require_ok(store->create_key(make_key("payments", "9c1f0e2a-0000-4000-8000-000000000001")));
  require_ok(store->create_key(make_key("cards", "9c1f0e2a-0000-4000-8000-000000000002")));
  KeyVersionRecord v2 = make_key("", "").versions[0];
  v2.version = 2;
  require_ok(store->add_version("payments", v2));
  require_ok(store->set_version_state("payments", 1, KeyState::kDestroyScheduled, 99, 5));

  ProbeRun run = run_probe("list " + shell_quote(path));
  CHECK(run.exit_code == 0);
  CHECK(run.output ==
        "cards 9c1f0e2a-0000-4000-8000-000000000002 1 enabled\n"
        "payments 9c1f0e2a-0000-4000-8000-000000000001 1 destroy_scheduled\n"
        "payments 9c1f0e2a-0000-4000-8000-000000000001 2 enabled\n");
}

TEST_CASE("ProbeCreateIsVisibleToOpenStore") {
  TempDir dir;
  std::string path = dir.file("kekd.db");
  auto store = open_store(path);
  require_ok(store->create_key(make_key("payments", "9c1f0e2a-0000-4000-8000-000000000001")));

  ProbeRun run = run_probe(
      "create " + shell_quote(path) + " cards 9c1f0e2a-0000-4000-8000-000000000002", true);
  REQUIRE_MESSAGE(run.exit_code == 0, run.output);
  CHECK(run.output.empty());

  auto found = store->find_key("cards");
  REQUIRE(found.ok());
  REQUIRE(found->has_value());
  CHECK((*found)->id == "9c1f0e2a-0000-4000-8000-000000000002");
  REQUIRE((*found)->versions.size() == 1);
  CHECK((*found)->versions[0].version == 1);
  CHECK((*found)->versions[0].state == KeyState::kEnabled);
  auto all = store->list_keys();
  REQUIRE(all.ok());
  CHECK(all->size() == 2);
}

TEST_CASE("ProbeCreateFailsWhenNameTaken") {
  TempDir dir;
  std::string path = dir.file("kekd.db");
  auto store = open_store(path);
  require_ok(store->create_key(make_key("payments", "9c1f0e2a-0000-4000-8000-000000000001")));

  ProbeRun run = run_probe(
      "create " + shell_quote(path) + " payments 9c1f0e2a-0000-4000-8000-000000000003", true);
  CHECK(run.exit_code == 1);
  CHECK(run.output.find("already_exists") != std::string::npos);
  auto all = store->list_keys();
  REQUIRE(all.ok());
  CHECK(all->size() == 1);
}

// A fresh file is switched to WAL and migrated by whichever process comes first; the others must
// wait for it rather than fail.
TEST_CASE("ProbesCreatingAtOnceOnFreshFileAllSucceed") {
  TempDir dir;
  std::string path = dir.file("kekd.db");
  constexpr int kProbes = 16;
  std::string script;
  for (int i = 0; i < kProbes; ++i) {
    script += shell_quote(KEKD_STORE_PROBE) + " create " + shell_quote(path) + " key" +
              std::to_string(i) + " id" + std::to_string(i) + " 2>&1 || echo failed & ";
  }
  script += "wait";
  ProbeRun run = run_shell(script);
  CHECK(run.exit_code == 0);
  CHECK_MESSAGE(run.output.empty(), run.output);

  auto store = open_store(path);
  auto all = store->list_keys();
  REQUIRE(all.ok());
  CHECK(all->size() == kProbes);
}

}  // namespace
}  // namespace kekd::store
