// kekd.toml loading: the shape of the file (sections are tables of values, keys are plain),
// server.listen, server.worker_cpus and audit.commit_delay_us. Each refused shape and listen
// address is also a regression case of the config fuzz target (tests/fuzz/corpus/config/
// regression-*); the worker_cpus cases found no defect there and are checked here only.
#include <doctest/doctest.h>

#include "kekd/daemon/config.h"

using namespace kekd;
using namespace kekd::daemon;

namespace {

Error refused(std::string_view toml) {
  Result<Config> c = parse_config(toml, "/etc/kekd");
  REQUIRE_FALSE(c.ok());
  CHECK(c.error().code() == Code::kInvalidArgument);
  return c.error();
}

}  // namespace

TEST_CASE("ParseConfigFailsWhenAQuotedKeyHasADot") {
  // Not the same key as listen in [server]: it used to be accepted and ignored.
  CHECK(refused("\"server.listen\" = \"0.0.0.0:1\"\n").message() ==
        "config: unknown key 'server.listen'");
  CHECK(refused("[server]\n\"allow_plaintext.x\" = true\n").message() ==
        "config: unknown key 'server.allow_plaintext.x'");
}

TEST_CASE("ParseConfigFailsWhenASectionIsNotATable") {
  CHECK(refused("server = 1\n").message() == "config: 'server' must be a table, [server]");
  CHECK(refused("[[hsm]]\npin_env = \"X\"\n").message() == "config: 'hsm' must be a table, [hsm]");
  CHECK(refused("[server.listen]\n").message() ==
        "config: 'server.listen' must be a value, not a table");
}

TEST_CASE("ParseConfigFailsWhenTheListenHostIsEmpty") {
  CHECK(refused("[server]\nlisten = \"[]:8200\"\nallow_plaintext = true\n").message() ==
        "config: server.listen must be host:port, e.g. \"127.0.0.1:8200\"");
}

TEST_CASE("ParseConfigReadsSectionsWrittenAsDottedOrInlineTables") {
  Result<Config> c = parse_config(
      "server.listen = \"[::1]:8443\"\nhsm = { pin_env = \"PIN\", sessions = 4 }\n", "/etc/kekd");
  REQUIRE_MESSAGE(c.ok(), c.error().to_string());
  CHECK(c->server.host == "::1");
  CHECK(c->server.port == 8443);
  CHECK(c->hsm.pin_env == "PIN");
  CHECK(c->hsm.sessions == 4);
}

TEST_CASE("IoThreadsDefaultToOnePerFourCpusAndAConfiguredNumberWins") {
  Result<Config> c = parse_config("", "/etc/kekd");
  REQUIRE_MESSAGE(c.ok(), c.error().to_string());
  CHECK(c->server.io_threads == 0);
  CHECK(io_threads_for(0, 0) == 1);  // hardware_concurrency() may not know
  CHECK(io_threads_for(0, 1) == 1);
  CHECK(io_threads_for(0, 2) == 1);
  CHECK(io_threads_for(0, 7) == 1);
  CHECK(io_threads_for(0, 8) == 2);
  CHECK(io_threads_for(0, 64) == 16);
  CHECK(io_threads_for(3, 2) == 3);

  Result<Config> set = parse_config("[server]\nio_threads = 5\n", "/etc/kekd");
  REQUIRE_MESSAGE(set.ok(), set.error().to_string());
  CHECK(io_threads_for(set->server.io_threads, 2) == 5);
  CHECK(refused("[server]\nio_threads = 65\n").message().find("server.io_threads") !=
        std::string::npos);
  CHECK(refused("[server]\nio_threads = -1\n").message().find("server.io_threads") !=
        std::string::npos);
}

TEST_CASE("WorkerCpusAreAnArrayOfDistinctCpuNumbersAndNoneByDefault") {
  Result<Config> c = parse_config("", "/etc/kekd");
  REQUIRE_MESSAGE(c.ok(), c.error().to_string());
  CHECK(c->server.worker_cpus.empty());

  Result<Config> set = parse_config("[server]\nworker_cpus = [3, 0, 1023]\n", "/etc/kekd");
  REQUIRE_MESSAGE(set.ok(), set.error().to_string());
  CHECK(set->server.worker_cpus == std::vector<unsigned>{3, 0, 1023});
  Result<Config> empty = parse_config("[server]\nworker_cpus = []\n", "/etc/kekd");
  REQUIRE_MESSAGE(empty.ok(), empty.error().to_string());
  CHECK(empty->server.worker_cpus.empty());

  const std::string shape = "config: server.worker_cpus must be an array of CPU numbers, like [1]";
  CHECK(refused("[server]\nworker_cpus = 1\n").message() == shape);
  CHECK(refused("[server]\nworker_cpus = \"0-1\"\n").message() == shape);
  CHECK(refused("[server]\nworker_cpus = [1, \"2\"]\n").message() == shape);
  CHECK(refused("[server]\nworker_cpus = [1.0]\n").message() == shape);
  CHECK(refused("[server]\nworker_cpus = [[1]]\n").message() == shape);
  CHECK(refused("[server]\nworker_cpus = [-1]\n").message() ==
        "config: server.worker_cpus: -1 is not a CPU number (0 to 1023)");
  CHECK(refused("[server]\nworker_cpus = [1024]\n").message() ==
        "config: server.worker_cpus: 1024 is not a CPU number (0 to 1023)");
  CHECK(refused("[server]\nworker_cpus = [1, 2, 1]\n").message() ==
        "config: server.worker_cpus names CPU 1 twice");
}

TEST_CASE("AuditCommitDelayDefaultsTo200MicrosecondsAndIsBounded") {
  Result<Config> c = parse_config("", "/etc/kekd");
  REQUIRE_MESSAGE(c.ok(), c.error().to_string());
  CHECK(c->audit.commit_delay_us == 200);

  Result<Config> off = parse_config("[audit]\ncommit_delay_us = 0\n", "/etc/kekd");
  REQUIRE_MESSAGE(off.ok(), off.error().to_string());
  CHECK(off->audit.commit_delay_us == 0);
  Result<Config> most = parse_config("[audit]\ncommit_delay_us = 10000\n", "/etc/kekd");
  REQUIRE_MESSAGE(most.ok(), most.error().to_string());
  CHECK(most->audit.commit_delay_us == 10000);

  CHECK(refused("[audit]\ncommit_delay_us = 10001\n").message() ==
        "config: audit.commit_delay_us must be between 0 and 10000");
  CHECK(refused("[audit]\ncommit_delay_us = -1\n").message() ==
        "config: audit.commit_delay_us must be between 0 and 10000");
  CHECK(refused("[audit]\ncommit_delay_us = \"200us\"\n").message().find("audit.commit_delay_us") !=
        std::string::npos);
}

TEST_CASE("HsmReinitializeAfterIsAutoUnlessACountOrZeroIsGiven") {
  Result<Config> c = parse_config("", "/etc/kekd");
  REQUIRE_MESSAGE(c.ok(), c.error().to_string());
  CHECK_FALSE(c->hsm.reinitialize_after.has_value());  // the HSM layer chooses by module
  Result<Config> auto_ = parse_config("[hsm]\nreinitialize_after = \"auto\"\n", "/etc/kekd");
  REQUIRE_MESSAGE(auto_.ok(), auto_.error().to_string());
  CHECK_FALSE(auto_->hsm.reinitialize_after.has_value());
  Result<Config> never = parse_config("[hsm]\nreinitialize_after = 0\n", "/etc/kekd");
  REQUIRE_MESSAGE(never.ok(), never.error().to_string());
  CHECK(never->hsm.reinitialize_after == std::optional<std::uint64_t>(0));
  Result<Config> every = parse_config("[hsm]\nreinitialize_after = 50000\n", "/etc/kekd");
  REQUIRE_MESSAGE(every.ok(), every.error().to_string());
  CHECK(every->hsm.reinitialize_after == std::optional<std::uint64_t>(50000));

  const std::string expected =
      "config: hsm.reinitialize_after must be \"auto\", 0 (never) or between 1000 and "
      "1000000000000";
  CHECK(refused("[hsm]\nreinitialize_after = 999\n").message() == expected);
  CHECK(refused("[hsm]\nreinitialize_after = -1\n").message() == expected);
  CHECK(refused("[hsm]\nreinitialize_after = \"sometimes\"\n").message() == expected);
  CHECK(refused("[hsm]\nreinitialize_after = 1.5\n").message() == expected);
}
