// An output file under construction: a temporary file beside it (mode 0600 from the start: it
// may receive a plaintext), removed unless committed, and renamed to its name only once written
// and flushed to disk. Used wherever kekctl writes a file a failure must not leave half-written.
#pragma once

#include <sys/types.h>

#include <fstream>
#include <memory>
#include <string>

#include "kekd/common/error.h"

namespace kekd::cli {

class PendingOutput {
 public:
  static Result<std::unique_ptr<PendingOutput>> create(const std::string& path, mode_t mode);
  ~PendingOutput();
  PendingOutput(const PendingOutput&) = delete;
  PendingOutput& operator=(const PendingOutput&) = delete;

  // Flushes the data to disk, gives the file its mode and its name.
  Status commit();

  std::ofstream stream;

 private:
  PendingOutput(std::string path, std::string temp, mode_t mode)
      : path_(std::move(path)), temp_(std::move(temp)), mode_(mode) {}
  std::string path_;
  std::string temp_;
  mode_t mode_;
  bool committed_ = false;
};

}  // namespace kekd::cli
