// The application API's key operations (DESIGN §7): describe keys, data keys, wrap, unwrap,
// rewrap. kekctl does no cryptography here: kekd checks every input, kekctl only moves bytes.
#include <botan/base64.h>
#include <botan/mem_ops.h>

#include "commands.h"
#include "context_option.h"
#include "output.h"

namespace kekd::cli {
namespace {

using Json = nlohmann::json;

// kekd takes at most 4096 bytes of plaintext and says so itself; this only bounds what kekctl
// reads into memory before asking.
constexpr std::size_t kMaxInput = 64 * 1024;

std::string key_target(const std::string& key, const char* operation) {
  return "/v1/keys/" + path_segment(key) + "/" + operation;
}

void scrub(std::string& text) { Botan::secure_scrub_memory(text.data(), text.size()); }

struct CiphertextInput {
  std::string text;
  std::string file;
};

std::shared_ptr<CiphertextInput> add_ciphertext_options(CLI::App* command) {
  auto input = std::make_shared<CiphertextInput>();
  CLI::Option_group* group = command->add_option_group("Ciphertext", "the ciphertext to use");
  group->add_option("--ciphertext", input->text, "the ciphertext, base64");
  group->add_option("--ciphertext-file", input->file,
                    "file holding the ciphertext, base64 text or raw bytes ('-' for stdin)");
  group->require_option(1);
  return input;
}

bool is_base64_char(std::uint8_t c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/' || c == '=';
}
bool is_space(std::uint8_t c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// A file may hold the base64 text (`jq -r .ciphertext > f`, possibly wrapped by `base64`) or the
// raw ciphertext. They cannot be confused: a raw ciphertext starts with its version byte 0x01.
Result<std::string> ciphertext_base64(const CiphertextInput& input) {
  if (input.file.empty()) return input.text;
  KEKD_ASSIGN_OR_RETURN(SecretBytes bytes, read_input(input.file, kMaxInput));
  bool text = true;
  for (std::uint8_t c : bytes) text = text && (is_base64_char(c) || is_space(c));
  if (!text) return Botan::base64_encode(bytes.data(), bytes.size());
  std::string b64;
  for (std::uint8_t c : bytes) {
    if (!is_space(c)) b64 += static_cast<char>(c);
  }
  return b64;
}

void add_keys(CLI::App& app, Action& slot) {
  auto name = std::make_shared<std::string>();
  CLI::App* command = app.add_subcommand("keys", "list the keys, or describe one");
  command->add_option("name", *name, "the key to describe");
  on_run(command, slot, [name](KekdClient& client) -> Status {
    std::string target = name->empty() ? "/v1/keys" : "/v1/keys/" + path_segment(*name);
    KEKD_ASSIGN_OR_RETURN(Json answer, client.call("GET", target, nullptr));
    return print_json(answer);
  });
}

void add_datakey(CLI::App& app, Action& slot) {
  struct Options {
    std::string key;
    unsigned bytes = 32;
    bool no_plaintext = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* command = app.add_subcommand("datakey",
                                         "generate a data key: its ciphertext and, unless told not "
                                         "to, its plaintext");
  command->add_option("key", o->key, "the key (KEK) that wraps it")->required();
  command->add_option("--bytes", o->bytes, "length of the data key in bytes")
      ->capture_default_str();
  auto context = add_context_option(command);
  command->add_flag("--no-plaintext", o->no_plaintext,
                    "answer with the ciphertext only, to be unwrapped when needed");
  on_run(command, slot, [o, context](KekdClient& client) -> Status {
    Json body = {{"bytes", o->bytes}};
    put_context(body, *context);
    if (o->no_plaintext) body["plaintext"] = false;
    KEKD_ASSIGN_OR_RETURN(Json answer, client.call("POST", key_target(o->key, "datakey"), &body));
    return print_json(answer);
  });
}

void add_wrap(CLI::App& app, Action& slot) {
  struct Options {
    std::string key;
    std::string in = "-";
  };
  auto o = std::make_shared<Options>();
  CLI::App* command = app.add_subcommand("wrap", "wrap a key of your own (its raw bytes)");
  command->add_option("key", o->key, "the key (KEK) that wraps it")->required();
  command->add_option("--in", o->in, "file with the raw plaintext bytes, '-' for stdin")
      ->capture_default_str();
  auto context = add_context_option(command);
  on_run(command, slot, [o, context](KekdClient& client) -> Status {
    KEKD_ASSIGN_OR_RETURN(SecretBytes plaintext, read_input(o->in, kMaxInput));
    Json body = {{"plaintext", Botan::base64_encode(plaintext.data(), plaintext.size())}};
    put_context(body, *context);
    Result<Json> answer = client.call("POST", key_target(o->key, "wrap"), &body);
    scrub(body["plaintext"].get_ref<std::string&>());
    if (!answer.ok()) return answer.error();
    return print_json(*answer);
  });
}

void add_unwrap(CLI::App& app, Action& slot) {
  struct Options {
    std::string key;
    std::string out;
  };
  auto o = std::make_shared<Options>();
  CLI::App* command = app.add_subcommand("unwrap", "unwrap a ciphertext");
  command->add_option("key", o->key, "the key (KEK) the ciphertext was made with")->required();
  auto ciphertext = add_ciphertext_options(command);
  auto context = add_context_option(command);
  command->add_option("--out", o->out,
                      "write the raw plaintext bytes to this file (mode 0600) instead of showing "
                      "them in base64");
  on_run(command, slot, [o, ciphertext, context](KekdClient& client) -> Status {
    KEKD_ASSIGN_OR_RETURN(std::string b64, ciphertext_base64(*ciphertext));
    Json body = {{"ciphertext", b64}};
    put_context(body, *context);
    KEKD_ASSIGN_OR_RETURN(Json answer, client.call("POST", key_target(o->key, "unwrap"), &body));
    if (!o->out.empty()) {
      KEKD_ASSIGN_OR_RETURN(SecretBytes plaintext, take_plaintext(answer));
      KEKD_RETURN_IF_ERROR(write_private_file(o->out, plaintext));
    }
    Status printed = print_json(answer);
    if (auto member = answer.find("plaintext"); member != answer.end() && member->is_string()) {
      scrub(member->get_ref<std::string&>());
    }
    return printed;
  });
}

void add_rewrap(CLI::App& app, Action& slot) {
  auto key = std::make_shared<std::string>();
  CLI::App* command =
      app.add_subcommand("rewrap", "re-encrypt a ciphertext under the key's primary version");
  command->add_option("key", *key, "the key (KEK) the ciphertext was made with")->required();
  auto ciphertext = add_ciphertext_options(command);
  auto context = add_context_option(command);
  on_run(command, slot, [key, ciphertext, context](KekdClient& client) -> Status {
    KEKD_ASSIGN_OR_RETURN(std::string b64, ciphertext_base64(*ciphertext));
    Json body = {{"ciphertext", b64}};
    put_context(body, *context);
    KEKD_ASSIGN_OR_RETURN(Json answer, client.call("POST", key_target(*key, "rewrap"), &body));
    return print_json(answer);
  });
}

}  // namespace

void add_key_commands(CLI::App& app, Action& slot) {
  add_keys(app, slot);
  add_datakey(app, slot);
  add_wrap(app, slot);
  add_unwrap(app, slot);
  add_rewrap(app, slot);
}

}  // namespace kekd::cli
