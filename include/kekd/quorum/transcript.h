// The ceremony transcript document (docs/ceremony-formats.md, "The transcript"): everything
// anyone needs to re-verify a ceremony offline with openssl and the operators' public keys.
//
//   kekd transcript v1
//   ceremony: <id>
//   signer: sha256:<fingerprint of kekd's audit public key>
//   --- statement
//   <the statement bytes, exactly>
//   --- operator-set
//   <the canonical operator set the statement's operator-set hash names, exactly>
//   --- approvals
//   approval: <operator> <RFC 3339 time> <base64 signature>      one per accepted approval
//   --- outcome
//   state: executed                                             open|executed|cancelled|...
//   finished-at: 2026-11-23T10:07:01Z                           absent while open
//   result: created key payments version 1                      absent while open
//
// Security model: the document carries its own evidence (statement, the set that counted, each
// signature), so a reader trusts kekd only for the outcome line, which kekd signs with its
// non-extractable audit key; that signature is added by the daemon, not here.
#pragma once

#include <string>
#include <string_view>

#include "kekd/common/error.h"
#include "kekd/quorum/ceremony.h"

namespace kekd::quorum {

// The document for ceremony c, whose approving set has the canonical text canonical_set.
// kInvalidArgument for a malformed signer fingerprint; kInternal if canonical_set is not the set
// the statement names.
Result<std::string> format_transcript(const Ceremony& c, std::string_view canonical_set,
                                      std::string_view signer_fingerprint);

}  // namespace kekd::quorum
