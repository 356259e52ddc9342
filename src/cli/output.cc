#include "output.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <botan/base64.h>
#include <botan/mem_ops.h>

#include <cerrno>
#include <cstring>
#include <iostream>

namespace kekd::cli {
Error file_error(const std::string& what, const std::string& path, int err) {
  return Error(Code::kInvalidArgument, "cannot " + what + " " + path + ": " + std::strerror(err));
}

Result<SecretBytes> take_plaintext(nlohmann::json& answer) {
  auto member = answer.find("plaintext");
  if (member == answer.end() || !member->is_string()) {
    return Error(Code::kInternal, "kekd's answer has no plaintext");
  }
  std::string& encoded = member->get_ref<std::string&>();
  SecretBytes plaintext;
  bool decoded = true;
  try {
    plaintext = Botan::base64_decode(encoded);
  } catch (const std::exception&) {
    decoded = false;
  }
  Botan::secure_scrub_memory(encoded.data(), encoded.size());
  answer.erase(member);
  if (!decoded) return Error(Code::kInternal, "kekd's answer has a plaintext that is not base64");
  return plaintext;
}

Status print_json(const nlohmann::json& value) {
  std::cout << value.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  std::cout.flush();
  if (!std::cout) return Error(Code::kInternal, "cannot write to stdout");
  return ok_status();
}

Result<SecretBytes> read_input(const std::string& path, std::size_t limit,
                               const std::string& label) {
  bool is_stdin = path == "-";
  std::string name = is_stdin ? std::string("stdin") : label.empty() ? path : label + " " + path;
  int fd = is_stdin ? STDIN_FILENO : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return file_error("read", name, errno);
  SecretBytes data(limit + 1);
  std::size_t size = 0;
  int err = 0;
  while (size < data.size()) {
    ssize_t n = ::read(fd, data.data() + size, data.size() - size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) err = errno;
    if (n <= 0) break;
    size += static_cast<std::size_t>(n);
  }
  if (!is_stdin) ::close(fd);
  if (err != 0) return file_error("read", name, err);
  if (size > limit) {
    return Error(Code::kInvalidArgument,
                 name + " holds more than " + std::to_string(limit) + " bytes");
  }
  data.resize(size);
  return data;
}

Status write_private_file(const std::string& path, ByteView bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return file_error("create", path, errno);
  // open(2) keeps the mode of a file that exists already.
  if (::fchmod(fd, 0600) != 0) {
    int err = errno;
    ::close(fd);
    return file_error("set the mode of", path, err);
  }
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      ::unlink(path.c_str());
      return file_error("write", path, err);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::close(fd) != 0) {
    int err = errno;
    ::unlink(path.c_str());
    return file_error("write", path, err);
  }
  return ok_status();
}

}  // namespace kekd::cli
