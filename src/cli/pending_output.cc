#include "pending_output.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>

#include "output.h"

namespace kekd::cli {

Result<std::unique_ptr<PendingOutput>> PendingOutput::create(const std::string& path,
                                                             mode_t mode) {
  std::filesystem::path target(path);
  std::string temp =
      (target.has_parent_path() ? target.parent_path() / "" : std::filesystem::path()).string() +
      "." + target.filename().string() + ".kekctl-XXXXXX";
  int fd = ::mkstemp(temp.data());  // mode 0600 from the start: it may receive a plaintext
  if (fd < 0) return file_error("create a temporary file for", path, errno);
  ::close(fd);
  auto pending = std::unique_ptr<PendingOutput>(new PendingOutput(path, temp, mode));
  pending->stream.open(temp, std::ios::binary | std::ios::trunc);
  if (!pending->stream) return file_error("write", temp, errno);
  return pending;
}

PendingOutput::~PendingOutput() {
  if (!committed_) {
    stream.close();
    ::unlink(temp_.c_str());
  }
}

Status PendingOutput::commit() {
  stream.close();
  if (stream.fail()) return file_error("write", path_, EIO);
  int fd = ::open(temp_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return file_error("reopen", temp_, errno);
  const bool synced = ::fsync(fd) == 0 && ::fchmod(fd, mode_) == 0;
  const int err = errno;
  ::close(fd);
  if (!synced) return file_error("flush", temp_, err);
  if (::rename(temp_.c_str(), path_.c_str()) != 0) {
    return file_error("rename the output to", path_, errno);
  }
  committed_ = true;
  return ok_status();
}

}  // namespace kekd::cli
