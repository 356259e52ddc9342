#include "kekd/quorum/ceremony.h"

namespace kekd::quorum {

std::string_view client_state_name(CeremonyState state) {
  return state == CeremonyState::kExecuting ? "open" : store::ceremony_state_name(state);
}

std::uint32_t Ceremony::approvals_needed() const {
  return approvals.size() >= terms.threshold
             ? 0
             : terms.threshold - static_cast<std::uint32_t>(approvals.size());
}

Result<Ceremony> ceremony_from_record(const store::CeremonyRecord& record) {
  Result<Statement> terms = parse_statement(record.statement);
  const bool consistent =
      terms.ok() && terms->id == record.id && action_name(terms->action) == record.action &&
      terms->key == record.key && terms->operator_set == record.operator_set_hash &&
      terms->threshold == record.threshold && terms->proposed_by == record.proposed_by &&
      terms->proposed_at == record.created_at && terms->expires_at == record.expires_at;
  if (!consistent) {
    return Error(Code::kInternal, "store: ceremony " + record.id +
                                      " is damaged: its record does not match its statement");
  }
  Ceremony c{std::move(*terms),  record.statement, record.state, {},
             record.finished_at, record.result};
  for (const store::ApprovalRecord& a : record.approvals) {
    c.approvals.push_back(Approval{a.operator_name, a.at, a.signature});
  }
  return c;
}

}  // namespace kekd::quorum
