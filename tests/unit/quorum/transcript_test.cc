// The transcript document, byte for byte (docs/ceremony-formats.md).
#include <doctest/doctest.h>

#include <botan/base64.h>

#include "kekd/quorum/ceremony_service.h"
#include "kekd/quorum/transcript.h"
#include "support/memory_hsm.h"
#include "unit/quorum/service_fixture.h"

using namespace kekd;
using namespace kekd::quorum;
using namespace kekd::testing;

namespace {

Operator fixed(std::string name, std::string_view spki_base64) {
  auto der = Botan::base64_decode(std::string(spki_base64));
  auto op = operator_from_der(std::move(name), Bytes(der.begin(), der.end()));
  REQUIRE(op.ok());
  return *op;
}

const std::string kSigner = "sha256:" + std::string(64, 'b');
constexpr UnixMillis kProposed = 1'795'428'000'000;  // 2026-11-23T10:00:00Z

// A create-key ceremony approved by alice and bob, with the fixed keys of operator_keys.h.
Ceremony example(OperatorSet& set) {
  auto made = make_operator_set(
      {fixed("alice", kEd25519SpkiA), fixed("bob", kP256SpkiA), fixed("carol", kEd25519SpkiB)}, 2,
      false);
  REQUIRE(made.ok());
  set = *made;
  Statement t;
  t.id = "9c1f0e2ab3d44c5e8f7a1b2c3d4e5f60";
  t.action = Action::kCreateKey;
  t.key = "payments";
  t.operator_set = set.hash();
  t.threshold = 2;
  t.proposed_by = "admin";
  t.proposed_at = kProposed;
  t.expires_at = kProposed + 86'400'000;
  auto text = format_statement(t);
  REQUIRE(text.ok());
  return Ceremony{t,
                  *text,
                  CeremonyState::kExecuted,
                  {{"alice", kProposed + 300'000, Bytes{0x01, 0x02, 0x03}},
                   {"bob", kProposed + 420'500, Bytes{0xff, 0xfe}}},
                  kProposed + 421'000,
                  "created key payments version 1"};
}

const std::string kStatementText =
    "kekd ceremony v1\n"
    "id: 9c1f0e2ab3d44c5e8f7a1b2c3d4e5f60\n"
    "action: create-key\n"
    "key: payments\n"
    "operator-set: sha256:93911443365d0990d272f9af83aee4a7037cc8d9d6af551011e209ca1e0eb3c5\n"
    "threshold: 2\n"
    "proposed-by: admin\n"
    "proposed-at: 2026-11-23T10:00:00Z\n"
    "expires-at: 2026-11-24T10:00:00Z\n";

const std::string kSetText =
    "kekd operator-set v1\n"
    "threshold: 2\n"
    "operator: alice ed25519 MCowBQYDK2VwAyEAs1/oR1H6p+nqQJ4JUVn308KXa6L2nBSFEH2wge8Ojjg=\n"
    "operator: bob ecdsa-p256 "
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE8FyGtqQj9fdLur8fTvkiBnFtJaFpaxt+"
    "NL7P6DzjRUgusXB1BRxMVshraooI"
    "5EfWyYT9Wo9hstE5n2cDm7nXLQ==\n"
    "operator: carol ed25519 MCowBQYDK2VwAyEAP+1NUrs/9StTEo1nFAb5wah/ntI+bcy7Q/R9HDUmMv4=\n";

}  // namespace

TEST_CASE("TranscriptDocumentIsByteExactForExecutedCeremony") {
  OperatorSet set;
  Ceremony c = example(set);
  auto doc = format_transcript(c, set.canonical(), kSigner);
  REQUIRE_MESSAGE(doc.ok(), doc.error().to_string());
  CHECK(*doc ==
        "kekd transcript v1\n"
        "ceremony: 9c1f0e2ab3d44c5e8f7a1b2c3d4e5f60\n"
        "signer: " +
            kSigner +
            "\n"
            "--- statement\n" +
            kStatementText + "--- operator-set\n" + kSetText +
            "--- approvals\n"
            "approval: alice 2026-11-23T10:05:00Z AQID\n"
            "approval: bob 2026-11-23T10:07:00Z //4=\n"
            "--- outcome\n"
            "state: executed\n"
            "finished-at: 2026-11-23T10:07:01Z\n"
            "result: created key payments version 1\n");
}

TEST_CASE("TranscriptDocumentOmitsFinishLinesWhileOpen") {
  OperatorSet set;
  Ceremony c = example(set);
  c.approvals.pop_back();
  c.state = CeremonyState::kExecuting;  // shown as open
  c.finished_at.reset();
  c.result.reset();
  auto doc = format_transcript(c, set.canonical(), kSigner);
  REQUIRE(doc.ok());
  CHECK(
      doc->ends_with("--- approvals\n"
                     "approval: alice 2026-11-23T10:05:00Z AQID\n"
                     "--- outcome\n"
                     "state: open\n"));
}

TEST_CASE("TranscriptFailsForWrongSetOrMalformedSigner") {
  OperatorSet set;
  Ceremony c = example(set);
  auto other = format_transcript(c, set.canonical() + "x", kSigner);
  REQUIRE_FALSE(other.ok());
  CHECK(other.error().code() == Code::kInternal);
  auto signer = format_transcript(c, set.canonical(), "sha256:xyz");
  REQUIRE_FALSE(signer.ok());
  CHECK(signer.error().code() == Code::kInvalidArgument);
}

TEST_CASE("ServiceTranscriptCarriesStatementSetAndVerifiableApprovals") {
  MemoryHsm hsm;
  QuorumHarness q(hsm);
  Ceremony c = q.propose({.action = "create-key", .key = "payments"});
  q.approve_ok(c, "carol");
  Ceremony done = q.approve_ok(c, "alice");
  auto doc = q.service->transcript_document(done, kSigner);
  REQUIRE_MESSAGE(doc.ok(), doc.error().to_string());
  auto set = q.service->operators();
  REQUIRE(set.ok());
  const std::string set_text = set->canonical();
  CHECK(doc->find("--- statement\n" + c.statement + "--- operator-set\n" + set_text +
                  "--- approvals\napproval: carol ") != std::string::npos);
  // Each approval line re-verifies against the operator's key in the set section.
  for (const Approval& a : done.approvals) {
    std::string line = "approval: " + a.operator_name + " " + format_rfc3339(a.at) + " ";
    std::size_t at = doc->find(line);
    REQUIRE(at != std::string::npos);
    std::string b64 = doc->substr(at + line.size(), doc->find('\n', at) - at - line.size());
    auto sig = Botan::base64_decode(b64);
    const Operator* op = set->find(a.operator_name);
    REQUIRE(op != nullptr);
    CHECK(verify_signature(*op,
                           ByteView(reinterpret_cast<const std::uint8_t*>(c.statement.data()),
                                    c.statement.size()),
                           Bytes(sig.begin(), sig.end()))
              .ok());
  }
  CHECK(doc->ends_with("state: executed\nfinished-at: " + format_rfc3339(q.h.now) +
                       "\nresult: created key payments version 1\n"));
}
