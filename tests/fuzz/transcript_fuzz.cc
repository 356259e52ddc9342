// The ceremony transcript (include/kekd/quorum/transcript.h, docs/ceremony-formats.md) and the
// canonical operator set it carries (include/kekd/quorum/operator_set.h).
//
// kekd has no transcript parser of its own: kekd writes transcripts (format_transcript) and
// scripts/ceremony/verify-transcript.sh reads them. What kekd does parse are the document's
// sections: the statement (statement_fuzz.cc), the canonical operator set, and the approval
// lines' times and base64. This target reads a document as docs/ceremony-formats.md lays it out,
// parses each section with kekd's own parsers, rebuilds the ceremony and asks format_transcript
// for the document again. Properties:
//  - parse_operator_set: a refusal is kInvalidArgument; an accepted set is exactly its canonical
//    text, and its hash is the SHA-256 tag of the input;
//  - a document whose sections all parse is exactly what format_transcript writes for them, so a
//    verifier reading the layout and kekd writing it agree on every byte, and format_transcript
//    refuses (kInternal) exactly when the set is not the one the statement names.
#include <botan/base64.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.h"
#include "kekd/quorum/operator_set.h"
#include "kekd/quorum/statement.h"
#include "kekd/quorum/transcript.h"

using namespace kekd;
using quorum::CeremonyState;

namespace {

void check_operator_set(std::string_view text) {
  Result<quorum::OperatorSet> set = quorum::parse_operator_set(text);
  if (!set.ok()) {
    FUZZ_CHECK(set.error().code() == Code::kInvalidArgument);
    return;
  }
  FUZZ_CHECK(set->canonical() == text);
  FUZZ_CHECK(set->hash() == quorum::sha256_tag(text));
  FUZZ_CHECK(set->threshold >= 1 && set->threshold <= set->operators.size());
}

// Takes `prefix` off the front of `text`, or returns false.
bool take(std::string_view& text, std::string_view prefix) {
  if (!text.starts_with(prefix)) return false;
  text.remove_prefix(prefix.size());
  return true;
}

// The text up to and excluding the next line that is exactly `marker`; consumes the marker line.
std::optional<std::string_view> section(std::string_view& text, std::string_view marker) {
  const std::string line = "\n" + std::string(marker) + "\n";
  std::size_t at;
  if (text.starts_with(std::string(marker) + "\n")) {
    at = 0;
  } else {
    at = text.find(line);
    if (at == std::string_view::npos) return std::nullopt;
    ++at;  // the section keeps its final LF
  }
  std::string_view body = text.substr(0, at);
  text.remove_prefix(at + marker.size() + 1);
  return body;
}

// One line of `text` after `name: `, without its LF; consumes it.
std::optional<std::string_view> line(std::string_view& text, std::string_view name) {
  if (!take(text, name) || !take(text, ": ")) return std::nullopt;
  std::size_t lf = text.find('\n');
  if (lf == std::string_view::npos) return std::nullopt;
  std::string_view value = text.substr(0, lf);
  text.remove_prefix(lf + 1);
  return value;
}

std::optional<quorum::Approval> approval(std::string_view value) {
  std::size_t first = value.find(' ');
  if (first == std::string_view::npos) return std::nullopt;
  std::size_t second = value.find(' ', first + 1);
  if (second == std::string_view::npos) return std::nullopt;
  // This reader is as strict as the layout: one spelling of a time and of base64, the ones
  // format_transcript writes (parse_rfc3339 and Botan's decoder accept a little more).
  const std::string_view time = value.substr(first + 1, second - first - 1);
  std::optional<UnixMillis> at = parse_rfc3339(time);
  if (!at || format_rfc3339(*at) != time) return std::nullopt;
  quorum::Approval a;
  a.operator_name = value.substr(0, first);
  a.at = *at;
  try {
    Botan::secure_vector<std::uint8_t> signature =
        Botan::base64_decode(std::string(value.substr(second + 1)), /*ignore_ws=*/false);
    a.signature.assign(signature.begin(), signature.end());
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (Botan::base64_encode(a.signature.data(), a.signature.size()) != value.substr(second + 1)) {
    return std::nullopt;
  }
  return a;
}

void check_transcript(std::string_view text) {
  const std::string_view document = text;
  if (!take(text, "kekd transcript v1\n")) return;
  std::optional<std::string_view> id = line(text, "ceremony");
  std::optional<std::string_view> signer = line(text, "signer");
  if (!id || !signer || !take(text, "--- statement\n")) return;
  std::optional<std::string_view> statement = section(text, "--- operator-set");
  if (!statement) return;
  std::optional<std::string_view> set = section(text, "--- approvals");
  if (!set) return;
  quorum::Ceremony c;
  Result<quorum::Statement> terms = quorum::parse_statement(*statement);
  if (!terms.ok() || terms->id != *id) return;
  c.terms = *terms;
  c.statement = *statement;
  while (text.starts_with("approval: ")) {
    std::optional<std::string_view> value = line(text, "approval");
    if (!value) return;
    std::optional<quorum::Approval> a = approval(*value);
    if (!a) return;
    c.approvals.push_back(std::move(*a));
  }
  if (!take(text, "--- outcome\n")) return;
  std::optional<std::string_view> state = line(text, "state");
  if (!state) return;
  if (*state == "open") {
    c.state = CeremonyState::kOpen;
  } else if (*state == "executed") {
    c.state = CeremonyState::kExecuted;
  } else if (*state == "cancelled") {
    c.state = CeremonyState::kCancelled;
  } else if (*state == "expired") {
    c.state = CeremonyState::kExpired;
  } else if (*state == "failed") {
    c.state = CeremonyState::kFailed;
  } else {
    return;
  }
  if (!text.empty()) {
    std::optional<std::string_view> finished = line(text, "finished-at");
    std::optional<std::string_view> result = finished ? line(text, "result") : std::nullopt;
    if (!result) return;
    c.finished_at = parse_rfc3339(*finished);
    if (!c.finished_at || format_rfc3339(*c.finished_at) != *finished) return;
    c.result = std::string(*result);
  }
  if (!text.empty()) return;

  Result<std::string> formatted = quorum::format_transcript(c, *set, *signer);
  if (!quorum::validate_set_hash(*signer).ok()) {
    FUZZ_CHECK(!formatted.ok() && formatted.error().code() == Code::kInvalidArgument);
    return;
  }
  if (quorum::sha256_tag(*set) != c.terms.operator_set) {
    FUZZ_CHECK(!formatted.ok() && formatted.error().code() == Code::kInternal);
    return;
  }
  FUZZ_CHECK(formatted.ok());
  // An open ceremony's outcome has no finished-at and result lines: a document that has them
  // for state open is not one kekd writes, and that difference is the only one allowed.
  if (c.state == CeremonyState::kOpen && c.finished_at) {
    FUZZ_CHECK(*formatted != document);
    return;
  }
  FUZZ_CHECK(*formatted == document);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  check_operator_set(text);
  check_transcript(text);
  return 0;
}
