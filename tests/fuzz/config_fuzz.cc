// parse_config (include/kekd/daemon/config.h) on arbitrary TOML text: what kekd reads at start.
// Properties:
//  - a refusal is kInvalidArgument with a message that starts "config: " (never an exception:
//    toml++ throws on bad TOML, and that must be turned into an error);
//  - an accepted config is within every documented bound, needs no TLS only on loopback or when
//    allowed, has its relative paths resolved under the config's directory;
//  - every key of an accepted file is one kekd reads: tables at the top ([server], [hsm], ...),
//    values inside them, no key with a dot in it (a quoted "server.listen" at the top is another
//    key than listen in [server], and would be silently ignored);
//  - the accepted values, written back as TOML, load again to the same values.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <toml++/toml.h>

#include "fuzz_check.h"
#include "kekd/daemon/config.h"

using namespace kekd;
using daemon::Config;

namespace {

constexpr const char* kBase = "/etc/kekd";

// A TOML basic string: quotes, backslashes and control characters escaped.
std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string millis(UnixMillis ms) { return quoted(std::to_string(ms) + "ms"); }

std::string listen(const daemon::ServerConfig& s) {
  // parse_listen takes one pair of brackets off the host: add them back when it had any.
  const bool v6 =
      s.host.find(':') != std::string::npos || (s.host.starts_with('[') && s.host.ends_with(']'));
  return (v6 ? "[" + s.host + "]" : s.host) + ":" + std::to_string(s.port);
}

std::string to_toml(const Config& c) {
  std::string t = "[server]\n";
  t += "listen = " + quoted(listen(c.server)) + "\n";
  t += "tls_cert = " + quoted(c.server.tls_cert) + "\n";
  t += "tls_key = " + quoted(c.server.tls_key) + "\n";
  t += "client_ca = " + quoted(c.server.client_ca) + "\n";
  t += std::string("allow_plaintext = ") + (c.server.allow_plaintext ? "true" : "false") + "\n";
  t += "io_threads = " + std::to_string(c.server.io_threads) + "\n";
  t += "workers = " + std::to_string(c.server.workers) + "\n";
  t += "worker_cpus = [";
  for (unsigned cpu : c.server.worker_cpus) t += std::to_string(cpu) + ",";
  t += "]\n";
  t += "max_connections = " + std::to_string(c.server.max_connections) + "\n";
  t += "header_limit = " + std::to_string(c.server.header_limit) + "\n";
  t += "body_limit = " + std::to_string(c.server.body_limit) + "\n";
  t += "read_timeout = " + millis(c.server.read_timeout) + "\n";
  t += "idle_timeout = " + millis(c.server.idle_timeout) + "\n";
  t += "drain_timeout = " + millis(c.server.drain_timeout) + "\n";
  t += "[hsm]\n";
  t += "module = " + quoted(c.hsm.module) + "\n";
  t += "token_label = " + quoted(c.hsm.token_label) + "\n";
  t += "pin_file = " + quoted(c.hsm.pin_file) + "\n";
  t += "pin_env = " + quoted(c.hsm.pin_env) + "\n";
  t += "sessions = " + std::to_string(c.hsm.sessions) + "\n";
  t += "[store]\npath = " + quoted(c.store_path) + "\n";
  t += "[ceremony]\n";
  t += "ttl = " + millis(c.ceremony.ttl) + "\n";
  t += "min_destroy_delay = " + millis(c.ceremony.min_destroy_delay) + "\n";
  t += "default_destroy_delay = " + millis(c.ceremony.default_destroy_delay) + "\n";
  t += "[audit]\nmode = ";
  t += c.audit.mode == daemon::AuditMode::kAsync ? "\"async\"\n" : "\"durable\"\n";
  t += "commit_delay_us = " + std::to_string(c.audit.commit_delay_us) + "\n";
  t += "[kms]\nregion = " + quoted(c.kms.region) + "\naccount = " + quoted(c.kms.account) + "\n";
  t += "[log]\nlevel = " + quoted(c.log_level) + "\n";
  return t;
}

// The layout kekd reads: a table per section, and values (not tables) in it, all keys plain.
void check_layout(std::string_view text) {
  const toml::table root = toml::parse(text);  // parse_config accepted it: it is valid TOML
  for (const auto& [section, node] : root) {
    FUZZ_CHECK(section.str().find('.') == std::string_view::npos);
    const toml::table* table = node.as_table();
    FUZZ_CHECK(table != nullptr);
    for (const auto& [key, value] : *table) {
      FUZZ_CHECK(key.str().find('.') == std::string_view::npos);
      FUZZ_CHECK(!value.is_table());
    }
  }
}

bool absolute_or_empty(const std::string& path) { return path.empty() || path.front() == '/'; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  Result<Config> parsed = daemon::parse_config(text, kBase);
  if (!parsed.ok()) {
    FUZZ_CHECK(parsed.error().code() == Code::kInvalidArgument);
    FUZZ_CHECK(parsed.error().message().starts_with("config: "));
    return 0;
  }
  const Config& c = *parsed;
  check_layout(text);
  FUZZ_CHECK(!c.server.host.empty());
  FUZZ_CHECK(c.server.io_threads <= 64);  // 0: chosen from the CPUs at start
  FUZZ_CHECK(c.server.workers <= 1024);
  for (std::size_t i = 0; i < c.server.worker_cpus.size(); ++i) {
    FUZZ_CHECK(c.server.worker_cpus[i] <= 1023);  // whether the machine has it: at kekd serve
    for (std::size_t j = 0; j < i; ++j) {
      FUZZ_CHECK(c.server.worker_cpus[i] != c.server.worker_cpus[j]);
    }
  }
  FUZZ_CHECK(c.server.max_connections >= 1 && c.server.max_connections <= 1'000'000);
  FUZZ_CHECK(c.server.header_limit >= 1024 && c.server.header_limit <= 1024 * 1024);
  FUZZ_CHECK(c.server.body_limit >= 1024 && c.server.body_limit <= 64 * 1024 * 1024);
  FUZZ_CHECK(c.server.read_timeout > 0 && c.server.idle_timeout > 0 && c.server.drain_timeout > 0);
  FUZZ_CHECK(c.hsm.sessions >= 1 && c.hsm.sessions <= 1024);
  FUZZ_CHECK(!c.hsm.pin_file.empty() || !c.hsm.pin_env.empty());
  FUZZ_CHECK(c.server.tls_cert.empty() == c.server.tls_key.empty());
  FUZZ_CHECK(!c.server.tls_cert.empty() || c.server.allow_plaintext ||
             daemon::is_loopback(c.server.host));
  FUZZ_CHECK(c.ceremony.ttl > 0 && c.ceremony.min_destroy_delay > 0);
  FUZZ_CHECK(c.ceremony.default_destroy_delay >= c.ceremony.min_destroy_delay);
  FUZZ_CHECK(c.audit.commit_delay_us <= 10'000);
  FUZZ_CHECK(c.kms.account.size() == 12);
  FUZZ_CHECK(!c.kms.region.empty() && c.kms.region.size() <= 32);
  FUZZ_CHECK(absolute_or_empty(c.server.tls_cert) && absolute_or_empty(c.server.tls_key) &&
             absolute_or_empty(c.server.client_ca) && absolute_or_empty(c.hsm.pin_file) &&
             absolute_or_empty(c.store_path));

  Result<Config> again = daemon::parse_config(to_toml(c), kBase);
  FUZZ_CHECK(again.ok());
  const Config& a = *again;
  FUZZ_CHECK(a.server.host == c.server.host && a.server.port == c.server.port);
  FUZZ_CHECK(a.server.tls_cert == c.server.tls_cert && a.server.tls_key == c.server.tls_key &&
             a.server.client_ca == c.server.client_ca);
  FUZZ_CHECK(a.server.allow_plaintext == c.server.allow_plaintext);
  FUZZ_CHECK(a.server.io_threads == c.server.io_threads && a.server.workers == c.server.workers &&
             a.server.worker_cpus == c.server.worker_cpus &&
             a.server.max_connections == c.server.max_connections &&
             a.server.header_limit == c.server.header_limit &&
             a.server.body_limit == c.server.body_limit);
  FUZZ_CHECK(a.server.read_timeout == c.server.read_timeout &&
             a.server.idle_timeout == c.server.idle_timeout &&
             a.server.drain_timeout == c.server.drain_timeout);
  FUZZ_CHECK(a.hsm.module == c.hsm.module && a.hsm.token_label == c.hsm.token_label &&
             a.hsm.pin_file == c.hsm.pin_file && a.hsm.pin_env == c.hsm.pin_env &&
             a.hsm.sessions == c.hsm.sessions);
  FUZZ_CHECK(a.store_path == c.store_path);
  FUZZ_CHECK(a.ceremony.ttl == c.ceremony.ttl &&
             a.ceremony.min_destroy_delay == c.ceremony.min_destroy_delay &&
             a.ceremony.default_destroy_delay == c.ceremony.default_destroy_delay);
  FUZZ_CHECK(a.audit.mode == c.audit.mode && a.audit.commit_delay_us == c.audit.commit_delay_us);
  FUZZ_CHECK(a.kms.region == c.kms.region && a.kms.account == c.kms.account);
  FUZZ_CHECK(a.log_level == c.log_level);
  return 0;
}
