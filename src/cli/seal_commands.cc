// Sealed files (docs/sealed-file.md): kekctl seal / open. The file's contents never go to kekd:
// kekd makes a data key and unwraps it again; the encryption happens here, in constant memory.
//
// Both commands write to a temporary file beside the output and rename it only when the whole
// output is written and flushed to disk, so a failure (a tampered chunk, a full disk, Ctrl-C)
// never leaves a half-written file, and above all never a partial plaintext, under the
// output's name.
#include <botan/base64.h>
#include <botan/mem_ops.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "commands.h"
#include "context_option.h"
#include "kekd/seal/sealed_file.h"
#include "output.h"
#include "pending_output.h"

namespace kekd::cli {
namespace {

using Json = nlohmann::json;

// Files smaller than this finish before a bar is worth drawing.
constexpr std::uint64_t kProgressThreshold = 8ull * 1024 * 1024;

// The data key out of kekd's answer (datakey or unwrap), in zeroizing memory.
Result<SecretBytes> take_data_key(Json& answer) {
  KEKD_ASSIGN_OR_RETURN(SecretBytes key, take_plaintext(answer));
  if (key.size() != 32) {
    return Error(Code::kInternal, "kekd's answer does not hold a 32-byte data key");
  }
  return key;
}

// A bar on stderr when it is a terminal and the file is large, redrawn at each new percent.
class ProgressBar {
 public:
  ProgressBar(std::string label, std::uint64_t total)
      : label_(std::move(label)),
        total_(total),
        shown_(total >= kProgressThreshold && ::isatty(STDERR_FILENO) == 1) {}

  void update(std::uint64_t done) {
    done_ = done;
    if (!shown_) return;
    const int percent =
        static_cast<int>(total_ == 0 ? 100 : std::min<std::uint64_t>(done * 100 / total_, 100));
    if (percent == last_percent_) return;
    last_percent_ = percent;
    constexpr int kWidth = 30;
    const int filled = percent * kWidth / 100;
    std::fprintf(stderr, "\r%s [%s%s] %3d%% %.1f/%.1f MiB", label_.c_str(),
                 std::string(filled, '#').c_str(), std::string(kWidth - filled, '.').c_str(),
                 percent, static_cast<double>(done) / (1 << 20),
                 static_cast<double>(total_) / (1 << 20));
    if (percent == 100) std::fputc('\n', stderr);
    std::fflush(stderr);
  }

  // The bar ends at 100% when the work is done, whatever the estimate of the total was (a sealed
  // file is larger than its plaintext by the header and one tag per chunk).
  void finish() {
    if (last_percent_ >= 0) {
      total_ = done_;
      update(done_);
    }
  }

  // A failure after a partial bar starts on a fresh line.
  void abandon() {
    if (shown_ && last_percent_ >= 0 && last_percent_ < 100) std::fputc('\n', stderr);
  }

 private:
  std::string label_;
  std::uint64_t total_;
  bool shown_;
  std::uint64_t done_ = 0;
  int last_percent_ = -1;
};

Result<std::uint64_t> open_input(const std::string& path, std::ifstream& in) {
  in.open(path, std::ios::binary);
  if (!in) return file_error("read", path, errno);
  std::error_code ec;
  std::uint64_t size =
      std::filesystem::is_regular_file(path, ec) ? std::filesystem::file_size(path, ec) : 0;
  return ec ? 0 : size;
}

Status refuse_same_file(const std::string& in, const std::string& out) {
  std::error_code ec;
  if (std::filesystem::equivalent(in, out, ec)) {
    return Error(Code::kInvalidArgument, "the output " + out + " is the input file");
  }
  return ok_status();
}

mode_t umasked(mode_t mode) {
  mode_t mask = ::umask(0);
  ::umask(mask);
  return mode & ~mask;
}

struct Files {
  std::string in;
  std::string out;
};

std::shared_ptr<Files> add_files(CLI::App* command, const char* in_help, const char* out_help) {
  auto files = std::make_shared<Files>();
  command->add_option("in", files->in, in_help)->required();
  command->add_option("out", files->out, out_help)->required();
  return files;
}

void add_seal(CLI::App& app, Action& slot) {
  auto key = std::make_shared<std::string>();
  CLI::App* command = app.add_subcommand("seal", "encrypt a file under a fresh data key from kekd");
  command->add_option("--key", *key, "the key (KEK) that wraps the file's data key")->required();
  auto context = add_context_option(command);
  auto files = add_files(command, "the file to seal", "the sealed file to write");
  on_run(command, slot, [key, context, files](KekdClient& client) -> Status {
    KEKD_RETURN_IF_ERROR(refuse_same_file(files->in, files->out));
    std::ifstream in;
    KEKD_ASSIGN_OR_RETURN(std::uint64_t size, open_input(files->in, in));
    Json body = {{"bytes", 32}};
    put_context(body, *context);
    KEKD_ASSIGN_OR_RETURN(
        Json answer, client.call("POST", "/v1/keys/" + path_segment(*key) + "/datakey", &body));
    KEKD_ASSIGN_OR_RETURN(SecretBytes data_key, take_data_key(answer));
    seal::SealedHeader header;
    header.key = *key;
    header.context_bound = !context->empty();
    try {
      header.wrapped_key =
          Botan::unlock(Botan::base64_decode(answer.at("ciphertext").get<std::string>()));
    } catch (const std::exception&) {
      return Error(Code::kInternal, "kekd's answer has no ciphertext");
    }
    KEKD_ASSIGN_OR_RETURN(auto output, PendingOutput::create(files->out, umasked(0666)));
    ProgressBar bar("sealing " + files->in, size);
    Status sealed = seal::seal_stream(in, output->stream, header, data_key,
                                      [&bar](std::uint64_t done) { bar.update(done); });
    if (!sealed.ok()) {
      bar.abandon();
      return sealed;
    }
    bar.finish();
    return output->commit();
  });
}

void add_open(CLI::App& app, Action& slot) {
  CLI::App* command = app.add_subcommand("open", "decrypt a file made by kekctl seal");
  auto context = add_context_option(command);
  auto files = add_files(command, "the sealed file", "where to write the plaintext (mode 0600)");
  on_run(command, slot, [context, files](KekdClient& client) -> Status {
    KEKD_RETURN_IF_ERROR(refuse_same_file(files->in, files->out));
    std::ifstream in;
    KEKD_ASSIGN_OR_RETURN(std::uint64_t size, open_input(files->in, in));
    KEKD_ASSIGN_OR_RETURN(seal::SealedHeader header, seal::read_header(in));
    // Only a hint for a better message: kekd decides, since the context is bound into the key.
    if (header.context_bound && context->empty()) {
      return Error(Code::kInvalidArgument,
                   files->in +
                       " was sealed with an encryption context: give the same "
                       "context with --context k=v");
    }
    Json body = {
        {"ciphertext", Botan::base64_encode(header.wrapped_key.data(), header.wrapped_key.size())}};
    put_context(body, *context);
    KEKD_ASSIGN_OR_RETURN(
        Json answer,
        client.call("POST", "/v1/keys/" + path_segment(header.key) + "/unwrap", &body));
    KEKD_ASSIGN_OR_RETURN(SecretBytes data_key, take_data_key(answer));
    KEKD_ASSIGN_OR_RETURN(auto output, PendingOutput::create(files->out, 0600));
    ProgressBar bar("opening " + files->in, size);
    Status opened = seal::open_stream(in, output->stream, header, data_key,
                                      [&bar](std::uint64_t done) { bar.update(done); });
    if (!opened.ok()) {
      bar.abandon();
      return Error(opened.error().code(), files->in + ": " + opened.error().message());
    }
    bar.finish();
    return output->commit();
  });
}

}  // namespace

void add_seal_commands(CLI::App& app, Action& slot) {
  add_seal(app, slot);
  add_open(app, slot);
}

}  // namespace kekd::cli
