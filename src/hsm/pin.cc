#include "kekd/hsm/pin.h"

#include <sys/stat.h>

#include <botan/mem_ops.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>

namespace kekd::hsm {
namespace {

void strip_line_end(SecretBytes& pin) {
  while (!pin.empty() && (pin.back() == '\n' || pin.back() == '\r')) {
    pin.pop_back();
  }
}

// Botan's allocator places a secure_vector on its locked, never-dumped pages only if it holds 16
// to 256 bytes; a shorter PIN would land on the ordinary heap for as long as kekd runs (it is kept
// to log in again after the token comes back). 16 bytes of capacity put it on those pages.
SecretBytes on_locked_pages(const std::uint8_t* begin, const std::uint8_t* end) {
  SecretBytes pin;
  pin.reserve(std::max<std::size_t>(16, static_cast<std::size_t>(end - begin)));
  pin.assign(begin, end);
  return pin;
}

}  // namespace

Result<SecretBytes> load_pin_from_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return Error(Code::kInvalidArgument,
                 "cannot read PIN file " + path + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    return Error(Code::kInvalidArgument, "PIN file " + path + " is not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    // A PIN that other users can read is a PIN that is no longer secret; refuse rather than warn.
    return Error(Code::kFailedPrecondition,
                 "PIN file " + path + " is accessible by group or others; run: chmod 600 " + path);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Error(Code::kInvalidArgument, "cannot open PIN file " + path);
  }
  SecretBytes read((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  SecretBytes pin = on_locked_pages(read.data(), read.data() + read.size());
  strip_line_end(pin);
  if (pin.empty()) {
    return Error(Code::kInvalidArgument, "PIN file " + path + " is empty");
  }
  return pin;
}

Result<SecretBytes> load_pin_from_env(const std::string& variable) {
  const char* value = std::getenv(variable.c_str());
  if (value == nullptr || *value == '\0') {
    return Error(Code::kInvalidArgument, "environment variable " + variable + " is not set");
  }
  const std::size_t length = std::strlen(value);
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(value);
  SecretBytes pin = on_locked_pages(bytes, bytes + length);
  strip_line_end(pin);
  // unsetenv only takes the variable out of environ; /proc/<pid>/environ shows the environment
  // block as the process received it, to root and to anyone who may ptrace kekd. So the value is
  // overwritten where it lies first (that memory is the process's own and writable).
  Botan::secure_scrub_memory(const_cast<char*>(value), length);
  ::unsetenv(variable.c_str());
  return pin;
}

}  // namespace kekd::hsm
