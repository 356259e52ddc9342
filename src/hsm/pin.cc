#include "kekd/hsm/pin.h"

#include <sys/stat.h>

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
  SecretBytes pin((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
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
  SecretBytes pin(value, value + std::strlen(value));
  strip_line_end(pin);
  ::unsetenv(variable.c_str());
  return pin;
}

}  // namespace kekd::hsm
