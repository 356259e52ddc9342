// The audit log with SoftHSM's non-extractable key signing the checkpoints: they verify with
// Botan (audit::verify_*), with the openssl CLI, and with the shell blocks of docs/audit.md run as
// written there, which also catch a tampered copy.
#include <doctest/doctest.h>

#include <botan/pem.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <fstream>
#include <sstream>
#include <thread>

#include "kekd/audit/audit_log.h"
#include "kekd/audit/export.h"
#include "kekd/audit/verify.h"
#include "kekd/store/sqlite_store.h"
#include "support/temp_dir.h"
#include "support/token_fixture.h"

using namespace kekd;
using namespace kekd::testing;
using Json = nlohmann::json;

namespace {

constexpr std::string_view kLabel = "kekd-internal:audit";

void write_file(const std::string& path, std::string_view content) {
  std::ofstream out(path, std::ios::binary);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  REQUIRE(out.good());
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The ```sh blocks of docs/audit.md's section "Verifying by hand", in order.
std::vector<std::string> doc_shell_blocks() {
  const std::string doc = read_file(std::string(KEKD_SOURCE_DIR) + "/docs/audit.md");
  std::size_t pos = doc.find("\n## Verifying by hand");
  REQUIRE(pos != std::string::npos);
  std::vector<std::string> blocks;
  for (;;) {
    std::size_t begin = doc.find("\n```sh\n", pos);
    if (begin == std::string::npos) {
      return blocks;
    }
    begin += 7;
    std::size_t end = doc.find("\n```\n", begin);
    REQUIRE(end != std::string::npos);
    blocks.push_back(doc.substr(begin, end - begin + 1));
    pos = end + 4;
  }
}

struct Outcome {
  int status = -1;
  std::string output;
};

// Runs a block of the doc in dir (which holds audit.jsonl and audit.pub.pem).
Outcome run_block(const std::string& dir, const std::string& block) {
  write_file(dir + "/block.sh", block);
  Outcome o;
  o.output = run_command("cd " + shell_quote(dir) + " && bash block.sh 2>&1", &o.status);
  return o;
}

std::string export_text(store::AuditStore& store) {
  std::string text;
  std::int64_t after = 0;
  for (;;) {
    auto page = audit::export_page(store, after, 50);
    REQUIRE(page.ok());
    if (page->lines.empty()) {
      return text;
    }
    for (const std::string& line : page->lines) {
      text += line + "\n";
    }
    after = page->next;
  }
}

}  // namespace

TEST_CASE("AuditCheckpointsSignedBySoftHsmVerifyWithBotanAndOpenssl" *
          doctest::test_suite("concurrency")) {
  TokenFixture token;
  auto hsm = token.open_hsm(4);
  REQUIRE(hsm->generate_signing_key(kLabel).ok());
  auto spki = hsm->signing_public_key(kLabel);
  REQUIRE(spki.ok());

  TempDir dir;
  auto opened = store::SqliteStore::open(dir.file("kekd.db"));
  REQUIRE(opened.ok());
  std::unique_ptr<store::SqliteStore> store = std::move(opened).value();

  // Records from several threads over a few checkpoint intervals.
  audit::AuditOptions options;
  options.checkpoint_interval = std::chrono::milliseconds(50);
  auto log = audit::AuditLog::open(*store, *hsm, std::string(kLabel), options);
  REQUIRE_MESSAGE(log.ok(), log.error().to_string());
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 15; ++i) {
        audit::AuditEvent e;
        e.request_id = std::to_string(t) + "-" + std::to_string(i);
        e.principal = "app-" + std::to_string(t);
        e.action = i % 2 == 0 ? "key.wrap" : "key.unwrap";
        e.key = "payments";
        e.version = 1;
        if (i % 5 == 4) {
          e.error = Code::kInvalidCiphertext;
        }
        if (!(*log)->record(e).ok()) {
          failures += 1;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  CHECK(failures == 0);
  REQUIRE((*log)->close().ok());
  const audit::AuditStats stats = (*log)->stats();
  CHECK(stats.records == 60);
  CHECK(stats.last_checkpoint_seq == 60);
  MESSAGE(stats.checkpoints << " checkpoints, " << stats.transactions << " transactions");
  CHECK(stats.checkpoints >= 2);

  // Botan, over the store and over the export (the key as DER, then as PEM).
  audit::VerifyOptions strict;
  strict.require_checkpoint = true;
  auto direct = audit::verify_store(*store, *spki, strict);
  REQUIRE(direct.ok());
  CHECK_MESSAGE(direct->ok, direct->failure);
  CHECK(direct->records == 60);
  CHECK(direct->checkpoints == static_cast<std::int64_t>(stats.checkpoints));

  const std::string exported = export_text(*store);
  const std::string pem = Botan::PEM_Code::encode(*spki, "PUBLIC KEY");
  std::istringstream in(exported);
  auto from_export = audit::verify_export(
      in, ByteView(reinterpret_cast<const std::uint8_t*>(pem.data()), pem.size()), strict);
  REQUIRE(from_export.ok());
  CHECK_MESSAGE(from_export->ok, from_export->failure);
  CHECK(from_export->records == 60);

  // The openssl CLI, every checkpoint, from the message rule of docs/audit.md.
  write_file(dir.file("audit.pub.pem"), pem);
  write_file(dir.file("audit.jsonl"), exported);
  std::istringstream lines(exported);
  std::string line;
  int checked = 0;
  while (std::getline(lines, line)) {
    Json j = Json::parse(line);
    if (j["type"] != "checkpoint") {
      continue;
    }
    write_file(dir.file("msg"),
               audit::checkpoint_message(j["seq"], j["hash"].get<std::string>(), j["prev_seq"],
                                         j["time"].get<std::string>()));
    write_file(dir.file("sig.b64"), j["signature"].get<std::string>());
    int status = -1;
    std::string out = run_command("cd " + shell_quote(dir.path()) +
                                      " && base64 -d sig.b64 >sig.der && openssl dgst -sha256 "
                                      "-verify audit.pub.pem -signature sig.der msg 2>&1",
                                  &status);
    CHECK_MESSAGE(status == 0, out);
    CHECK(out.find("Verified OK") != std::string::npos);
    ++checked;
  }
  CHECK(checked == static_cast<int>(stats.checkpoints));

  // The shell blocks of docs/audit.md, as written there.
  std::vector<std::string> blocks = doc_shell_blocks();
  REQUIRE(blocks.size() == 2);
  Outcome signature = run_block(dir.path(), blocks[0]);
  CHECK_MESSAGE(signature.status == 0, signature.output);
  CHECK(signature.output.find("Verified OK") != std::string::npos);
  Outcome chain = run_block(dir.path(), blocks[1]);
  CHECK_MESSAGE(chain.status == 0, chain.output);
  CHECK(chain.output == "chain verified: record 60, hash " + direct->last_hash + "\n");

  // ... and they catch tampering: a changed record, a changed checkpoint.
  std::string tampered = exported;
  std::size_t at = tampered.find("\"principal\":\"app-2\"");
  REQUIRE(at != std::string::npos);
  tampered.replace(at, 19, "\"principal\":\"app-9\"");
  write_file(dir.file("audit.jsonl"), tampered);
  chain = run_block(dir.path(), blocks[1]);
  CHECK(chain.status != 0);
  CHECK_MESSAGE(chain.output.find(": hash does not match") != std::string::npos, chain.output);

  tampered = exported;
  std::size_t last_checkpoint = tampered.rfind("\"time\":\"");
  REQUIRE(last_checkpoint != std::string::npos);
  // The last line is the final checkpoint; bump the last digit of its milliseconds.
  char& digit = tampered[last_checkpoint + 8 + 22];
  digit = digit == '9' ? '0' : static_cast<char>(digit + 1);
  write_file(dir.file("audit.jsonl"), tampered);
  signature = run_block(dir.path(), blocks[0]);
  CHECK(signature.status != 0);
  CHECK(signature.output.find("Verified OK") == std::string::npos);
}
