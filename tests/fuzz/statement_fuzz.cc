// parse_statement (include/kekd/quorum/statement.h) on arbitrary text: what operators sign and
// what kekd reads back from its store. Properties:
//  - a refusal is kInvalidArgument;
//  - an accepted text is the one canonical text of its fields: format_statement gives it back
//    byte for byte, and parsing that again gives the same fields (so two different byte strings
//    never mean the same ceremony, which the signature scheme relies on).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_check.h"
#include "kekd/quorum/statement.h"

using namespace kekd;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  Result<quorum::Statement> parsed = quorum::parse_statement(text);
  if (!parsed.ok()) {
    FUZZ_CHECK(parsed.error().code() == Code::kInvalidArgument);
    return 0;
  }
  Result<std::string> formatted = quorum::format_statement(*parsed);
  FUZZ_CHECK(formatted.ok());
  FUZZ_CHECK(*formatted == text);
  Result<quorum::Statement> again = quorum::parse_statement(*formatted);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(*again == *parsed);
  FUZZ_CHECK(quorum::validate_ceremony_id(parsed->id).ok());
  FUZZ_CHECK(quorum::validate_set_hash(parsed->operator_set).ok());
  FUZZ_CHECK(parsed->expires_at > parsed->proposed_at);
  return 0;
}
