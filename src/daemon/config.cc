#include "kekd/daemon/config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace kekd::daemon {
namespace {

Error bad(const std::string& what) { return Error(Code::kInvalidArgument, "config: " + what); }

std::string resolve(const std::string& base_dir, const std::string& path) {
  if (path.empty() || std::filesystem::path(path).is_absolute()) {
    return path;
  }
  return (std::filesystem::path(base_dir) / path).lexically_normal().string();
}

// Every table and key kekd knows. Unknown keys are refused so that a typo does not silently fall
// back to a default (e.g. "alow_plaintext").
const std::set<std::string> kKnown = {"server",
                                      "server.listen",
                                      "server.tls_cert",
                                      "server.tls_key",
                                      "server.client_ca",
                                      "server.allow_plaintext",
                                      "server.io_threads",
                                      "server.workers",
                                      "server.worker_cpus",
                                      "server.max_connections",
                                      "server.header_limit",
                                      "server.body_limit",
                                      "server.read_timeout",
                                      "server.idle_timeout",
                                      "server.drain_timeout",
                                      "hsm",
                                      "hsm.module",
                                      "hsm.token_label",
                                      "hsm.pin_file",
                                      "hsm.pin_env",
                                      "hsm.sessions",
                                      "hsm.acquire_timeout",
                                      "hsm.stall_threshold",
                                      "hsm.reinitialize_after",
                                      "store",
                                      "store.path",
                                      "ceremony",
                                      "ceremony.ttl",
                                      "ceremony.min_destroy_delay",
                                      "ceremony.default_destroy_delay",
                                      "audit",
                                      "audit.mode",
                                      "audit.commit_delay_us",
                                      "kms",
                                      "kms.region",
                                      "kms.account",
                                      "log",
                                      "log.level"};

// The sections: tables at the top level, each holding values only. Values are looked up by
// dotted path (at_path), so the file must have exactly this shape: a quoted top-level key
// "server.listen", or `server = 1`, would pass a check of names alone and then be ignored.
const std::set<std::string> kSections = {"server", "hsm", "store", "ceremony",
                                         "audit",  "kms", "log"};

Status check_known(const toml::table& table, const std::string& prefix) {
  for (const auto& [key, node] : table) {
    std::string name =
        prefix.empty() ? std::string(key.str()) : prefix + "." + std::string(key.str());
    if (!kKnown.contains(name) || key.str().find('.') != std::string_view::npos) {
      return bad("unknown key '" + name + "'");
    }
    const toml::table* sub = node.as_table();
    if (kSections.contains(name) != (sub != nullptr)) {
      return bad(kSections.contains(name) ? "'" + name + "' must be a table, [" + name + "]"
                                          : "'" + name + "' must be a value, not a table");
    }
    if (sub != nullptr) {
      KEKD_RETURN_IF_ERROR(check_known(*sub, name));
    }
  }
  return ok_status();
}

template <typename T>
Status read(const toml::table& root, const char* path, T& out) {
  toml::node_view<const toml::node> node = root.at_path(path);
  if (!node) {
    return ok_status();
  }
  std::optional<T> value = node.value_exact<T>();
  if (!value) {
    return bad(std::string(path) + " has the wrong type");
  }
  out = *value;
  return ok_status();
}

Status read_size(const toml::table& root, const char* path, std::size_t& out, std::size_t min,
                 std::size_t max) {
  std::int64_t value = static_cast<std::int64_t>(out);
  KEKD_RETURN_IF_ERROR(read(root, path, value));
  if (value < static_cast<std::int64_t>(min) || value > static_cast<std::int64_t>(max)) {
    return bad(std::string(path) + " must be between " + std::to_string(min) + " and " +
               std::to_string(max));
  }
  out = static_cast<std::size_t>(value);
  return ok_status();
}

// "auto" (or absent): nullopt, for the HSM layer to choose by module; else a count in range, or 0.
Status read_count_or_auto(const toml::table& root, const char* path,
                          std::optional<std::uint64_t>& out, std::int64_t min, std::int64_t max) {
  toml::node_view<const toml::node> node = root.at_path(path);
  if (!node || node.value_exact<std::string>() == "auto") {
    return ok_status();
  }
  std::optional<std::int64_t> value = node.value_exact<std::int64_t>();
  if (!value || (*value != 0 && (*value < min || *value > max))) {
    return bad(std::string(path) + " must be \"auto\", 0 (never) or between " +
               std::to_string(min) + " and " + std::to_string(max));
  }
  out = static_cast<std::uint64_t>(*value);
  return ok_status();
}

// An array of distinct CPU numbers, each below the kernel's CPU_SETSIZE (1024).
Status read_cpus(const toml::table& root, const char* path, std::vector<unsigned>& out) {
  toml::node_view<const toml::node> node = root.at_path(path);
  if (!node) {
    return ok_status();
  }
  const std::string shape = std::string(path) + " must be an array of CPU numbers, like [1]";
  const toml::array* array = node.as_array();
  if (array == nullptr) {
    return bad(shape);
  }
  std::vector<unsigned> cpus;
  for (const toml::node& element : *array) {
    std::optional<std::int64_t> cpu = element.value_exact<std::int64_t>();
    if (!cpu) {
      return bad(shape);
    }
    if (*cpu < 0 || *cpu > 1023) {
      return bad(std::string(path) + ": " + std::to_string(*cpu) +
                 " is not a CPU number (0 to 1023)");
    }
    if (std::find(cpus.begin(), cpus.end(), static_cast<unsigned>(*cpu)) != cpus.end()) {
      return bad(std::string(path) + " names CPU " + std::to_string(*cpu) + " twice");
    }
    cpus.push_back(static_cast<unsigned>(*cpu));
  }
  out = std::move(cpus);
  return ok_status();
}

Status read_duration(const toml::table& root, const char* path, UnixMillis& out) {
  std::string text;
  KEKD_RETURN_IF_ERROR(read(root, path, text));
  if (text.empty()) {
    return ok_status();
  }
  std::optional<UnixMillis> value = parse_duration(text);
  if (!value) {
    return bad(std::string(path) + " is not a duration like \"24h\", \"30m\", \"10s\"");
  }
  out = *value;
  return ok_status();
}

Status check_range(const char* path, UnixMillis value, UnixMillis min_ms, UnixMillis max_ms) {
  if (value < min_ms || value > max_ms) {
    return bad(std::string(path) + " must be between " + std::to_string(min_ms) + "ms and " +
               std::to_string(max_ms / 60'000) + "m");
  }
  return ok_status();
}

Status parse_listen(const std::string& listen, ServerConfig& server) {
  std::size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == listen.size()) {
    return bad("server.listen must be host:port, e.g. \"127.0.0.1:8200\"");
  }
  std::string host = listen.substr(0, colon);
  if (host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) {  // "[]:8200"
    return bad("server.listen must be host:port, e.g. \"127.0.0.1:8200\"");
  }
  int port = 0;
  try {
    std::size_t used = 0;
    port = std::stoi(listen.substr(colon + 1), &used);
    if (used != listen.size() - colon - 1) port = -1;
  } catch (const std::exception&) {
    port = -1;
  }
  if (port < 0 || port > 65535) {
    return bad("server.listen has an invalid port");
  }
  server.host = host;
  server.port = static_cast<std::uint16_t>(port);
  return ok_status();
}

}  // namespace

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

std::size_t io_threads_for(std::size_t configured, unsigned cpus) {
  if (configured != 0) return configured;
  return std::max<std::size_t>(1, cpus / 4);
}

Result<Config> parse_config(std::string_view text, const std::string& base_dir) {
  toml::table root;
  try {
    root = toml::parse(text);
  } catch (const toml::parse_error& e) {
    std::ostringstream where;
    where << e.source().begin;
    return bad(std::string(e.description()) + " at " + where.str());
  }
  KEKD_RETURN_IF_ERROR(check_known(root, ""));

  Config c;
  std::string listen;
  KEKD_RETURN_IF_ERROR(read(root, "server.listen", listen));
  if (!listen.empty()) KEKD_RETURN_IF_ERROR(parse_listen(listen, c.server));
  KEKD_RETURN_IF_ERROR(read(root, "server.tls_cert", c.server.tls_cert));
  KEKD_RETURN_IF_ERROR(read(root, "server.tls_key", c.server.tls_key));
  KEKD_RETURN_IF_ERROR(read(root, "server.client_ca", c.server.client_ca));
  KEKD_RETURN_IF_ERROR(read(root, "server.allow_plaintext", c.server.allow_plaintext));
  KEKD_RETURN_IF_ERROR(read_size(root, "server.io_threads", c.server.io_threads, 0, 64));
  KEKD_RETURN_IF_ERROR(read_size(root, "server.workers", c.server.workers, 0, 1024));
  KEKD_RETURN_IF_ERROR(read_cpus(root, "server.worker_cpus", c.server.worker_cpus));
  KEKD_RETURN_IF_ERROR(
      read_size(root, "server.max_connections", c.server.max_connections, 1, 1'000'000));
  KEKD_RETURN_IF_ERROR(
      read_size(root, "server.header_limit", c.server.header_limit, 1024, 1024 * 1024));
  KEKD_RETURN_IF_ERROR(
      read_size(root, "server.body_limit", c.server.body_limit, 1024, 64 * 1024 * 1024));
  KEKD_RETURN_IF_ERROR(read_duration(root, "server.read_timeout", c.server.read_timeout));
  KEKD_RETURN_IF_ERROR(read_duration(root, "server.idle_timeout", c.server.idle_timeout));
  KEKD_RETURN_IF_ERROR(read_duration(root, "server.drain_timeout", c.server.drain_timeout));

  KEKD_RETURN_IF_ERROR(read(root, "hsm.module", c.hsm.module));
  KEKD_RETURN_IF_ERROR(read(root, "hsm.token_label", c.hsm.token_label));
  KEKD_RETURN_IF_ERROR(read(root, "hsm.pin_file", c.hsm.pin_file));
  KEKD_RETURN_IF_ERROR(read(root, "hsm.pin_env", c.hsm.pin_env));
  KEKD_RETURN_IF_ERROR(read_size(root, "hsm.sessions", c.hsm.sessions, 1, 1024));
  KEKD_RETURN_IF_ERROR(read_duration(root, "hsm.acquire_timeout", c.hsm.acquire_timeout));
  KEKD_RETURN_IF_ERROR(read_duration(root, "hsm.stall_threshold", c.hsm.stall_threshold));
  // Bounds that keep both meaningful: below 10 ms an ordinary burst of load would be refused or
  // called a stall (a network HSM takes milliseconds per call); above 10 minutes a client would
  // long have given up, and readiness would not say anything useful.
  KEKD_RETURN_IF_ERROR(check_range("hsm.acquire_timeout", c.hsm.acquire_timeout, 10, 600'000));
  KEKD_RETURN_IF_ERROR(check_range("hsm.stall_threshold", c.hsm.stall_threshold, 10, 600'000));
  // Below 1000 the pauses would come too often to be worth the memory they give back.
  KEKD_RETURN_IF_ERROR(read_count_or_auto(root, "hsm.reinitialize_after", c.hsm.reinitialize_after,
                                          1'000, 1'000'000'000'000));
  KEKD_RETURN_IF_ERROR(read(root, "store.path", c.store_path));
  KEKD_RETURN_IF_ERROR(read_duration(root, "ceremony.ttl", c.ceremony.ttl));
  KEKD_RETURN_IF_ERROR(
      read_duration(root, "ceremony.min_destroy_delay", c.ceremony.min_destroy_delay));
  KEKD_RETURN_IF_ERROR(
      read_duration(root, "ceremony.default_destroy_delay", c.ceremony.default_destroy_delay));
  KEKD_RETURN_IF_ERROR(read(root, "log.level", c.log_level));
  KEKD_RETURN_IF_ERROR(read(root, "kms.region", c.kms.region));
  KEKD_RETURN_IF_ERROR(read(root, "kms.account", c.kms.account));
  // Both end up in ARNs and in the signature's scope: the shapes AWS gives them.
  auto region_ok = [](const std::string& r) {
    return !r.empty() && r.size() <= 32 && std::all_of(r.begin(), r.end(), [](char ch) {
      return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-';
    });
  };
  if (!region_ok(c.kms.region)) {
    return bad("kms.region must be 1..32 characters of [a-z0-9-], like \"us-east-1\"");
  }
  if (c.kms.account.size() != 12 || !std::all_of(c.kms.account.begin(), c.kms.account.end(),
                                                 [](char ch) { return ch >= '0' && ch <= '9'; })) {
    return bad("kms.account must be 12 digits, like an AWS account id");
  }
  std::string audit_mode = "durable";
  KEKD_RETURN_IF_ERROR(read(root, "audit.mode", audit_mode));
  if (audit_mode == "durable") {
    c.audit.mode = AuditMode::kDurable;
  } else if (audit_mode == "async") {
    c.audit.mode = AuditMode::kAsync;
  } else if (audit_mode == "off") {
#ifdef KEKD_BENCHMARK_AUDIT_OFF
    c.audit.mode = AuditMode::kOff;
#else
    return bad("audit.mode = \"off\" exists only in benchmark builds (KEKD_BENCHMARK_AUDIT_OFF)");
#endif
  } else {
    return bad("audit.mode must be \"durable\" or \"async\"");
  }
  // Up to 10 ms: beyond a few fsyncs' time the wait only adds latency.
  KEKD_RETURN_IF_ERROR(
      read_size(root, "audit.commit_delay_us", c.audit.commit_delay_us, 0, 10'000));

  if (c.hsm.pin_file.empty() && c.hsm.pin_env.empty()) {
    return bad("set hsm.pin_file or hsm.pin_env: the PIN is never taken from the command line");
  }
  if (c.server.tls_cert.empty() != c.server.tls_key.empty()) {
    return bad("server.tls_cert and server.tls_key go together");
  }
  if (!c.server.client_ca.empty() && c.server.tls_cert.empty()) {
    return bad("server.client_ca needs TLS (server.tls_cert and server.tls_key)");
  }
  if (c.server.tls_cert.empty() && !c.server.allow_plaintext && !is_loopback(c.server.host)) {
    return bad("refusing to listen on " + c.server.host +
               " without TLS; set server.tls_cert and server.tls_key, or allow_plaintext = true");
  }
  if (c.ceremony.default_destroy_delay < c.ceremony.min_destroy_delay) {
    return bad("ceremony.default_destroy_delay is shorter than ceremony.min_destroy_delay");
  }
  static const std::set<std::string> kLevels = {"trace", "debug", "info", "warn", "error"};
  if (!kLevels.contains(c.log_level)) {
    return bad("log.level must be one of trace, debug, info, warn, error");
  }
  c.server.tls_cert = resolve(base_dir, c.server.tls_cert);
  c.server.tls_key = resolve(base_dir, c.server.tls_key);
  c.server.client_ca = resolve(base_dir, c.server.client_ca);
  c.hsm.pin_file = resolve(base_dir, c.hsm.pin_file);
  c.store_path = resolve(base_dir, c.store_path);
  return c;
}

Result<Config> load_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return Error(Code::kInvalidArgument, "cannot read config file " + path);
  }
  std::stringstream text;
  text << in.rdbuf();
  std::string base = std::filesystem::absolute(path).parent_path().string();
  KEKD_ASSIGN_OR_RETURN(Config config, parse_config(text.str(), base));
  config.path = path;
  return config;
}

}  // namespace kekd::daemon
