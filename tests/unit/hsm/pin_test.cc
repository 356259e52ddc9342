#include "kekd/hsm/pin.h"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "support/temp_dir.h"

using namespace kekd;
using kekd::testing::TempDir;

namespace {

std::string write_file(const TempDir& dir, const std::string& content, mode_t mode) {
  std::string path = dir.file("pin");
  std::ofstream(path) << content;
  ::chmod(path.c_str(), mode);
  return path;
}

}  // namespace

TEST_CASE("PinFileIsReadWithoutTrailingNewline") {
  TempDir dir;
  auto pin = hsm::load_pin_from_file(write_file(dir, "123456\n", 0600));
  REQUIRE(pin.ok());
  CHECK(std::string(pin->begin(), pin->end()) == "123456");
}

TEST_CASE("PinFileFailsWhenGroupOrOthersCanAccessIt") {
  TempDir dir;
  for (mode_t mode : {0640, 0604, 0660, 0644, 0602}) {
    auto pin = hsm::load_pin_from_file(write_file(dir, "123456", mode));
    REQUIRE_FALSE(pin.ok());
    CHECK(pin.error().code() == Code::kFailedPrecondition);
    CHECK(pin.error().message().find("chmod 600") != std::string::npos);
    CHECK(pin.error().message().find("123456") == std::string::npos);
  }
}

TEST_CASE("PinFileFailsWhenMissingOrEmpty") {
  TempDir dir;
  CHECK(hsm::load_pin_from_file(dir.file("nope")).error().code() == Code::kInvalidArgument);
  CHECK(hsm::load_pin_from_file(write_file(dir, "\n", 0600)).error().code() ==
        Code::kInvalidArgument);
  CHECK(hsm::load_pin_from_file(dir.path()).error().code() == Code::kInvalidArgument);
}

TEST_CASE("PinFromEnvironmentIsReadAndRemoved") {
  ::setenv("KEKD_TEST_PIN", "987654", 1);
  auto pin = hsm::load_pin_from_env("KEKD_TEST_PIN");
  REQUIRE(pin.ok());
  CHECK(std::string(pin->begin(), pin->end()) == "987654");
  CHECK(std::getenv("KEKD_TEST_PIN") == nullptr);
  CHECK(hsm::load_pin_from_env("KEKD_TEST_PIN").error().code() == Code::kInvalidArgument);
}

TEST_CASE("PinFromEnvironmentIsOverwrittenWhereItLay") {
  // putenv puts this very array into the environment, as the kernel puts the initial environment
  // block that /proc/<pid>/environ shows: getenv returns a pointer into it.
  static char entry[] = "KEKD_TEST_PIN=s3cret-pin-value";
  REQUIRE(::putenv(entry) == 0);
  auto pin = hsm::load_pin_from_env("KEKD_TEST_PIN");
  REQUIRE(pin.ok());
  CHECK(std::string(pin->begin(), pin->end()) == "s3cret-pin-value");
  CHECK(std::getenv("KEKD_TEST_PIN") == nullptr);
  const std::string value(entry + sizeof("KEKD_TEST_PIN=") - 1,
                          sizeof(entry) - sizeof("KEKD_TEST_PIN="));
  CHECK(value == std::string(value.size(), '\0'));
}

namespace {

// The VmFlags line of the mapping that holds address p, from /proc/self/smaps.
std::string vm_flags_of(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  const auto address = reinterpret_cast<std::uintptr_t>(p);
  bool inside = false;
  for (std::string line; std::getline(smaps, line);) {
    unsigned long start = 0, end = 0;
    char dash = 0;
    std::istringstream fields(line);
    if (fields >> std::hex >> start >> dash >> end && dash == '-' && line.find(' ') > 8) {
      inside = address >= start && address < end;
    } else if (inside && line.starts_with("VmFlags:")) {
      return line + " ";
    }
  }
  return "";
}

}  // namespace

TEST_CASE("PinIsKeptOnLockedPagesLeftOutOfCoreDumps") {
  // Botan's allocator serves 16 to 256 bytes from mlock()ed pages marked MADV_DONTDUMP
  // (docs/secret-hygiene.md); a 6-byte PIN would otherwise be on the ordinary heap. "lo" is locked,
  // "dd" do-not-dump in the kernel's VmFlags. This needs RLIMIT_MEMLOCK of at least a page.
  TempDir dir;
  auto from_file = hsm::load_pin_from_file(write_file(dir, "123456\n", 0600));
  ::setenv("KEKD_TEST_PIN", "654321", 1);
  auto from_env = hsm::load_pin_from_env("KEKD_TEST_PIN");
  REQUIRE(from_file.ok());
  REQUIRE(from_env.ok());
  for (const SecretBytes* pin : {&*from_file, &*from_env}) {
    const std::string flags = vm_flags_of(pin->data());
    CAPTURE(flags);
#if defined(__SANITIZE_ADDRESS__)
    // AddressSanitizer intercepts mlock() and makes it a no-op that reports success (it cannot
    // lock its shadow memory), so under scripts/sanitizers.sh the pages are never locked; the
    // ordinary build checks "lo".
#else
    CHECK(flags.find(" lo ") != std::string::npos);
#endif
    CHECK(flags.find(" dd ") != std::string::npos);
  }
}
