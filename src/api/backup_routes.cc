// GET /v1/backup (admin): a consistent copy of the store, taken while kekd serves
// (docs/operations.md, "Backup and restore"; `kekctl backup`).
//
// The copy is made in a private directory of its own (mkdtemp: mode 0700), read into the answer
// and removed on every path: it holds the clients' wrapped secrets and the audit log, and must
// not linger in a shared temporary directory. The answer carries the SHA-256 of its bytes, so the
// client can tell a complete download from a cut one.
#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "routes.h"

namespace kekd::api {
namespace {

Result<std::string> read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  std::streamoff size = in ? static_cast<std::streamoff>(in.tellg()) : -1;
  std::string bytes(size > 0 ? static_cast<std::size_t>(size) : 0, '\0');
  if (size < 0 || !in.seekg(0) || !in.read(bytes.data(), size)) {
    return Error(Code::kUnavailable, "backup: cannot read the copy " + path);
  }
  return bytes;
}

// The store copied into a fresh private directory and read back; the directory is gone after.
Result<std::string> copy_store(const ApiServices& s) {
  if (!s.backup_store) return Error(Code::kInternal, "backup: no store backup is configured");
  std::error_code ec;
  std::filesystem::path base = std::filesystem::temp_directory_path(ec);
  if (ec) {
    return Error(Code::kUnavailable, "backup: no temporary directory: " + ec.message());
  }
  std::string dir = (base / "kekd-backup-XXXXXX").string();
  if (::mkdtemp(dir.data()) == nullptr) {
    return Error(Code::kUnavailable, "backup: cannot create a directory in " + base.string() +
                                         ": " + std::strerror(errno));
  }
  const std::string file = dir + "/kekd.db";
  Result<std::string> bytes = [&]() -> Result<std::string> {
    KEKD_RETURN_IF_ERROR(s.backup_store(file));
    return read_whole_file(file);
  }();
  // Whatever happened; a directory left behind (EIO) is private and named kekd-backup-*.
  std::filesystem::remove_all(dir, ec);
  return bytes;
}

}  // namespace

void add_backup_routes(std::vector<Route>& routes) {
  routes.push_back({"GET", "/v1/backup", Access::kAdmin,
                    [](const ApiServices& s, Api::Context& c) -> Result<HttpResponse> {
                      Result<std::string> copy = copy_store(s);
                      audit::AuditEvent event = audit_event(c, "store.backup");
                      event.error = failure_of(copy);
                      KEKD_RETURN_IF_ERROR(record_audit(s, c, std::move(event)));
                      KEKD_ASSIGN_OR_RETURN(std::string bytes, std::move(copy));
                      std::string digest = audit::sha256_hex(bytes);
                      HttpResponse response =
                          text_response(std::move(bytes), "application/vnd.sqlite3");
                      response.headers.emplace_back("X-Kekd-Backup-Sha256", std::move(digest));
                      return response;
                    }});
}

}  // namespace kekd::api
