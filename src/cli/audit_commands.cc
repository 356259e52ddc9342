// The audit log (docs/audit.md): `kekctl audit export` pages through GET /v1/audit and writes the
// export format; `kekctl audit verify` checks an export or a store offline, with nothing but the
// audit public key: no kekd, no token, no HSM.
#include <fstream>
#include <iostream>
#include <memory>

#include "commands.h"
#include "kekd/audit/verify.h"
#include "kekd/store/sqlite_store.h"
#include "output.h"
#include "pending_output.h"

namespace kekd::cli {
namespace {

using Json = nlohmann::json;

constexpr std::size_t kExportPage = 1000;
constexpr std::size_t kMaxPublicKeyBytes = 16 * 1024;

struct ExportOptions {
  std::string out;  // empty: stdout
  std::int64_t after = 0;
};

// Writes every entry after `after` as one line each, exactly as the export format has it.
Status export_log(KekdClient& client, const ExportOptions& options, std::ostream& out) {
  std::int64_t after = options.after;
  for (;;) {
    KEKD_ASSIGN_OR_RETURN(Json page,
                          client.call("GET",
                                      "/v1/audit?after=" + std::to_string(after) +
                                          "&limit=" + std::to_string(kExportPage),
                                      nullptr));
    if (!page.is_object() || !page.contains("entries") || !page["entries"].is_array() ||
        !page.contains("next") || !page["next"].is_number_integer()) {
      return Error(Code::kInternal, "GET /v1/audit answered something that is not an audit page");
    }
    // The entries are canonical JSON (sorted members, no whitespace); dumping what was parsed
    // writes the same bytes back.
    for (const Json& entry : page["entries"]) {
      out << entry.dump(-1, ' ', false, Json::error_handler_t::strict) << '\n';
    }
    if (!out) return Error(Code::kInternal, "cannot write the export");
    const std::int64_t next = page["next"].get<std::int64_t>();
    if (next <= after) return ok_status();  // an empty page: the end of the log
    after = next;
  }
}

struct VerifyArgs {
  std::string public_key;
  std::string store;
  std::string file;
  bool require_checkpoint = false;
  std::string anchor;  // SEQ:HASH
};

Result<audit::VerifyOptions> verify_options(const VerifyArgs& args) {
  audit::VerifyOptions options;
  options.require_checkpoint = args.require_checkpoint;
  if (!args.anchor.empty()) {
    std::size_t colon = args.anchor.find(':');
    audit::Anchor anchor;
    bool ok = colon != std::string::npos && colon > 0 && colon < 19 &&
              args.anchor.size() - colon - 1 == 64;
    for (std::size_t i = 0; ok && i < colon; ++i) {
      ok = args.anchor[i] >= '0' && args.anchor[i] <= '9';
      anchor.seq = anchor.seq * 10 + (args.anchor[i] - '0');
    }
    if (!ok || anchor.seq < 1) {
      return Error(Code::kInvalidArgument, "--anchor is SEQ:HASH, a record number and its hash");
    }
    anchor.hash = args.anchor.substr(colon + 1);
    options.anchor = anchor;
  }
  return options;
}

Json result_json(const audit::VerifyResult& r) {
  Json out = {{"valid", r.ok},
              {"records", r.records},
              {"checkpoints", r.checkpoints},
              {"last_seq", r.last_seq},
              {"last_hash", r.last_hash},
              {"last_checkpoint_seq", r.last_checkpoint_seq},
              {"uncovered_records", r.uncovered},
              {"warnings", r.warnings}};
  if (!r.ok) out["failure"] = r.failure;
  return out;
}

Status verify_log(const VerifyArgs& args) {
  KEKD_ASSIGN_OR_RETURN(SecretBytes key, read_input(args.public_key, kMaxPublicKeyBytes,
                                                    "the public key file"));
  KEKD_ASSIGN_OR_RETURN(audit::VerifyOptions options, verify_options(args));
  Result<audit::VerifyResult> result = Error(Code::kInternal, "nothing verified");
  if (!args.store.empty()) {
    KEKD_ASSIGN_OR_RETURN(std::unique_ptr<store::SqliteStore> store,
                          store::SqliteStore::open_read_only(args.store));
    result = audit::verify_store(*store, key, options);
  } else if (args.file == "-") {
    result = audit::verify_export(std::cin, key, options);
  } else {
    std::ifstream in(args.file, std::ios::binary);
    if (!in) return file_error("read", args.file, errno);
    result = audit::verify_export(in, key, options);
  }
  if (!result.ok()) return result.error();
  KEKD_RETURN_IF_ERROR(print_json(result_json(*result)));
  if (!result->ok) {
    return Error(Code::kInvalidArgument, "the audit log does not verify: " + result->failure);
  }
  return ok_status();
}

}  // namespace

void add_audit_commands(CLI::App& app, Action& slot) {
  CLI::App* audit = app.add_subcommand("audit", "the tamper-evident audit log");
  audit->require_subcommand(1);

  auto export_options = std::make_shared<ExportOptions>();
  CLI::App* exp = audit->add_subcommand(
      "export", "write the audit log as JSON lines (admin); verify it with `audit verify`");
  exp->add_option("--out", export_options->out, "write to FILE instead of stdout")
      ->type_name("FILE");
  exp->add_option("--after", export_options->after, "start after this record number")
      ->check(CLI::NonNegativeNumber);
  on_run(exp, slot, [export_options](KekdClient& client) -> Status {
    if (export_options->out.empty()) return export_log(client, *export_options, std::cout);
    // Written aside and renamed once complete: a failed export leaves no partial file.
    KEKD_ASSIGN_OR_RETURN(auto output, PendingOutput::create(export_options->out, 0644));
    KEKD_RETURN_IF_ERROR(export_log(client, *export_options, output->stream));
    return output->commit();
  });

  auto verify_args = std::make_shared<VerifyArgs>();
  CLI::App* verify = audit->add_subcommand(
      "verify", "check the chain and every checkpoint signature offline; names the first bad place");
  verify->add_option("--public-key", verify_args->public_key, "the audit public key (PEM or DER)")
      ->type_name("PEM")
      ->required();
  auto* store = verify->add_option("--store", verify_args->store,
                                   "verify the log in kekd's store file (opened read-only)")
                    ->type_name("PATH");
  auto* file = verify->add_option("file", verify_args->file, "an export file, or - for stdin")
                   ->type_name("FILE");
  store->excludes(file);
  file->excludes(store);
  verify->add_flag("--require-checkpoint", verify_args->require_checkpoint,
                   "fail if records follow the last checkpoint (an export after a clean stop)");
  verify->add_option("--anchor", verify_args->anchor,
                     "SEQ:HASH from an earlier verification: the log must still hold it")
      ->type_name("SEQ:HASH");
  on_run(verify, slot, [verify_args](KekdClient&) -> Status {
    if (verify_args->store.empty() && verify_args->file.empty()) {
      return Error(Code::kInvalidArgument, "give an export FILE (or -) or --store PATH");
    }
    return verify_log(*verify_args);
  });
}

}  // namespace kekd::cli
