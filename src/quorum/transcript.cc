#include "kekd/quorum/transcript.h"

#include <botan/base64.h>

namespace kekd::quorum {

Result<std::string> format_transcript(const Ceremony& c, std::string_view canonical_set,
                                      std::string_view signer_fingerprint) {
  if (!validate_set_hash(signer_fingerprint).ok()) {
    return Error(Code::kInvalidArgument,
                 "the signer fingerprint is 'sha256:' and 64 lowercase hex digits");
  }
  if (sha256_tag(canonical_set) != c.terms.operator_set) {
    return Error(Code::kInternal, "ceremony " + c.id() +
                                      ": the operator set given is not the one its statement "
                                      "names");
  }
  std::string doc = "kekd transcript v1\n";
  doc += "ceremony: " + c.id() + "\n";
  doc += "signer: " + std::string(signer_fingerprint) + "\n";
  doc += "--- statement\n";
  doc += c.statement;
  doc += "--- operator-set\n";
  doc += canonical_set;
  doc += "--- approvals\n";
  for (const Approval& a : c.approvals) {
    doc += "approval: " + a.operator_name + " " + format_rfc3339(a.at) + " " +
           Botan::base64_encode(a.signature.data(), a.signature.size()) + "\n";
  }
  doc += "--- outcome\n";
  doc += "state: " + std::string(client_state_name(c.state)) + "\n";
  if (store::is_finished(c.state) && c.finished_at && c.result) {
    doc += "finished-at: " + format_rfc3339(*c.finished_at) + "\n";
    doc += "result: " + *c.result + "\n";
  }
  return doc;
}

}  // namespace kekd::quorum
