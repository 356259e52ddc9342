// kekctl backup --out DIR: an online copy of kekd's store (GET /v1/backup, admin), checked and
// written to a new directory with a description beside it (docs/kekctl.md, docs/operations.md).
//
// DIR must be new or an empty directory, so a backup never overwrites or mixes with another. It is
// created only once the copy has arrived and its SHA-256 matches kekd's header: a failed backup
// leaves nothing behind. Each file goes to a temporary name, is flushed to disk and renamed; the
// directory is flushed last. The store holds the clients' wrapped secrets, so DIR is 0700 and
// its files 0600.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <memory>
#include <string>

#include "commands.h"
#include "kekd/audit/record.h"
#include "kekd/common/time.h"
#include "output.h"
#include "pending_output.h"

namespace kekd::cli {
namespace {

using Json = nlohmann::json;

// Every SQLite database starts with these 16 bytes (the NUL included).
constexpr std::string_view kSqliteMagic{"SQLite format 3\0", 16};

// Whether DIR exists already (then it is an empty directory); an error for anything else,
// including a DIR that could not be created, so that kekd is not asked for a copy in vain.
Result<bool> check_out_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::file_status status = std::filesystem::status(dir, ec);
  if (status.type() == std::filesystem::file_type::not_found) {
    std::filesystem::path parent = std::filesystem::path(dir).parent_path();
    if (!parent.empty() && !std::filesystem::is_directory(parent, ec)) {
      return Error(Code::kInvalidArgument,
                   "cannot create " + dir + ": " + parent.string() + " is not a directory");
    }
    return false;
  }
  if (ec) return file_error("inspect", dir, ec.value());
  if (status.type() != std::filesystem::file_type::directory) {
    return Error(Code::kInvalidArgument,
                 dir + " exists and is not a directory; give a new or empty directory");
  }
  if (!std::filesystem::is_empty(dir, ec) || ec) {
    return Error(Code::kInvalidArgument,
                 ec ? "cannot list " + dir + ": " + ec.message()
                    : dir + " is not empty; a backup goes into a new or empty directory only");
  }
  return true;
}

Status fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return file_error("open", dir, errno);
  int err = ::fsync(fd) == 0 ? 0 : errno;
  ::close(fd);
  return err == 0 ? ok_status() : file_error("flush", dir, err);
}

// Creates DIR (0700) unless it existed empty, and flushes its parent so that DIR stays.
Status make_out_dir(const std::string& dir, bool existed) {
  if (existed) return ok_status();
  if (::mkdir(dir.c_str(), 0700) != 0) return file_error("create the directory", dir, errno);
  if (::chmod(dir.c_str(), 0700) != 0) return file_error("set the mode of", dir, errno);
  std::filesystem::path parent = std::filesystem::path(dir).parent_path();
  return fsync_dir(parent.empty() ? "." : parent.string());
}

Status write_file(const std::string& path, std::string_view bytes) {
  KEKD_ASSIGN_OR_RETURN(auto output, PendingOutput::create(path, 0600));
  output->stream.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return output->commit();
}

// Checks the copy kekd sent against the digest kekd computed before sending; returns the digest.
Result<std::string> check_copy(const api::ClientResponse& response) {
  auto header = response.headers.find("x-kekd-backup-sha256");
  if (header == response.headers.end()) {
    return Error(Code::kInternal,
                 "kekd's answer has no X-Kekd-Backup-Sha256 header; nothing was written");
  }
  std::string digest = audit::sha256_hex(response.body);
  if (digest != header->second) {
    return Error(Code::kInternal, "the copy received has SHA-256 " + digest + ", kekd sent " +
                                      header->second + "; nothing was written");
  }
  if (!response.body.starts_with(kSqliteMagic)) {
    return Error(Code::kInternal, "kekd's answer is not an SQLite database; nothing was written");
  }
  return digest;
}

// The address main connected to: --addr, else KEKD_ADDR (CLI11 reads it into the option), else
// the default.
std::string source_url(CLI::App& app) {
  const CLI::Option* addr = app.get_option("--addr");
  return addr->empty() ? std::string(kDefaultAddr) : addr->as<std::string>();
}

// Writes kekd.db and backup.json into DIR; on failure removes what it wrote, DIR too if it made
// it, so that a second attempt finds DIR as the first one did.
Status write_backup(const std::string& dir, bool existed, std::string_view copy,
                    const Json& description) {
  KEKD_RETURN_IF_ERROR(make_out_dir(dir, existed));
  const std::filesystem::path out(dir);
  Status written = write_file((out / "kekd.db").string(), copy);
  if (written.ok()) {
    written = write_file((out / "backup.json").string(), description.dump(2) + "\n");
  }
  if (written.ok()) written = fsync_dir(dir);
  if (!written.ok()) {
    std::error_code ignored;
    std::filesystem::remove(out / "backup.json", ignored);
    std::filesystem::remove(out / "kekd.db", ignored);
    if (!existed) std::filesystem::remove(out, ignored);
  }
  return written;
}

}  // namespace

void add_backup_commands(CLI::App& app, Action& slot) {
  auto dir = std::make_shared<std::string>();
  CLI::App* command = app.add_subcommand(
      "backup", "copy kekd's store while it serves, into a new directory (admin)");
  command
      ->add_option("--out", *dir,
                   "the directory to create (or an empty one): kekd.db and backup.json go in it")
      ->type_name("DIR")
      ->required();
  on_run(command, slot, [dir, &app](KekdClient& client) -> Status {
    KEKD_ASSIGN_OR_RETURN(bool existed, check_out_dir(*dir));
    KEKD_ASSIGN_OR_RETURN(api::ClientResponse response, client.fetch("GET", "/v1/backup"));
    KEKD_ASSIGN_OR_RETURN(std::string digest, check_copy(response));
    Json description = {{"created_at", format_rfc3339(now_millis())},
                        {"source", source_url(app)},
                        {"bytes", response.body.size()},
                        {"sha256", digest},
                        {"kekctl_version", KEKD_VERSION}};
    KEKD_RETURN_IF_ERROR(write_backup(*dir, existed, response.body, description));
    return print_json(description);
  });
}

}  // namespace kekd::cli
