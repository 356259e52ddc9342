// An internal error's detail never reaches the client, and always reaches the operator's log:
// otherwise a 500 (a KEK that kekd refuses, a store that fails) could not be explained.
#include "api/errors.h"

#include <doctest/doctest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <sstream>

#include "api/kms.h"

using namespace kekd;
using namespace kekd::api;

namespace {

// Routes spdlog's default logger into a string for the life of the object.
class CapturedLog {
 public:
  CapturedLog() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("captured", sink));
  }
  ~CapturedLog() { spdlog::set_default_logger(previous_); }
  std::string text() const { return out_.str(); }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> previous_;
};

}  // namespace

TEST_CASE("InternalErrorDetailGoesToTheLogAndNotToTheClient") {
  CapturedLog log;
  const std::string detail = "the token object labelled kekd:payments:1 is not a KEK";
  HttpResponse native = error_response(Error(Code::kInternal, detail), "rid-7");
  CHECK(native.status == 500);
  CHECK(native.body.find(detail) == std::string::npos);
  CHECK(native.body.find("internal error") != std::string::npos);
  CHECK(log.text().find("request id=rid-7: " + detail) != std::string::npos);

  kms::KmsError kms_error(Error(Code::kInternal, detail + " (KMS)"));
  CHECK(kms_error.message == "internal error");
  CHECK(log.text().find(detail + " (KMS)") != std::string::npos);

  // Any other error is the client's to read, and not the operator's to be paged about.
  HttpResponse refused = error_response(Error(Code::kNotFound, "key 'x' not found"), "rid-8");
  CHECK(refused.body.find("key 'x' not found") != std::string::npos);
  CHECK(log.text().find("rid-8") == std::string::npos);
}
