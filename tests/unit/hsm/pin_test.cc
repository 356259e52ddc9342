#include "kekd/hsm/pin.h"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>

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
