// Operators, ceremonies, approvals and transcripts (DESIGN §5, §7; docs/ceremony-formats.md).
#include <botan/base64.h>

#include "errors.h"
#include "kekd/common/time.h"
#include "kekd/quorum/ceremony_service.h"
#include "routes.h"

namespace kekd::api {
namespace {

using quorum::Ceremony;
using quorum::CeremonyState;

Json optional_time(const std::optional<UnixMillis>& t) {
  return t ? Json(format_rfc3339(*t)) : Json(nullptr);
}

Json ceremony_json(const Ceremony& c) {
  Json approvals = Json::array();
  for (const quorum::Approval& a : c.approvals) {
    approvals.push_back({{"operator", a.operator_name}, {"at", format_rfc3339(a.at)}});
  }
  const quorum::Statement& t = c.terms;
  return {{"id", t.id},
          {"action", std::string(quorum::action_name(t.action))},
          {"key", t.key.empty() ? Json(nullptr) : Json(t.key)},
          {"version", t.version ? Json(*t.version) : Json(nullptr)},
          {"destroy_after", optional_time(t.destroy_after)},
          {"state", std::string(quorum::client_state_name(c.state))},
          {"threshold", t.threshold},
          {"operator_set", t.operator_set},
          {"approvals", std::move(approvals)},
          {"approvals_needed", c.approvals_needed()},
          {"statement", c.statement},
          {"proposed_by", t.proposed_by},
          {"created_at", format_rfc3339(t.proposed_at)},
          {"expires_at", format_rfc3339(t.expires_at)},
          {"finished_at", optional_time(c.finished_at)},
          {"result", c.result ? Json(*c.result) : Json(nullptr)}};
}

Json operator_set_json(const quorum::OperatorSet& set) {
  Json operators = Json::array();
  for (const quorum::Operator& op : set.operators) {
    operators.push_back({{"name", op.name},
                         {"algorithm", std::string(quorum::algorithm_name(op.algorithm))},
                         {"public_key", op.pem()},
                         {"fingerprint", op.fingerprint()}});
  }
  return {
      {"threshold", set.threshold}, {"set_hash", set.hash()}, {"operators", std::move(operators)}};
}

Result<Bytes> decode_base64(const std::string& text, const char* what) {
  if (text.empty()) {
    return Error(Code::kInvalidArgument, std::string(what) + " is empty");
  }
  try {
    Botan::secure_vector<std::uint8_t> decoded = Botan::base64_decode(text, false);
    return Bytes(decoded.begin(), decoded.end());
  } catch (const std::exception&) {
    return Error(Code::kInvalidArgument, std::string(what) + " is not valid base64");
  }
}

Result<quorum::Proposal> decode_proposal(const std::string& body) {
  KEKD_ASSIGN_OR_RETURN(Json j, parse_object(body, {"action", "key", "version", "destroy_after",
                                                    "operators", "threshold", "force"}));
  quorum::Proposal p;
  KEKD_ASSIGN_OR_RETURN(p.action, required_string(j, "action"));
  KEKD_ASSIGN_OR_RETURN(p.key, optional_string(j, "key"));
  KEKD_ASSIGN_OR_RETURN(std::optional<std::uint64_t> version,
                        optional_uint(j, "version", 1, 0xffffffffu));
  if (version) p.version = static_cast<std::uint32_t>(*version);
  KEKD_ASSIGN_OR_RETURN(std::optional<std::string> destroy_after,
                        optional_string(j, "destroy_after"));
  if (destroy_after) {
    p.destroy_after = parse_rfc3339(*destroy_after);
    if (!p.destroy_after) {
      return Error(Code::kInvalidArgument,
                   "'destroy_after' must be an RFC 3339 UTC time like 2026-12-23T10:00:00Z");
    }
  }
  KEKD_ASSIGN_OR_RETURN(std::optional<std::uint64_t> threshold,
                        optional_uint(j, "threshold", 1, 1000));
  if (threshold) p.threshold = static_cast<std::uint32_t>(*threshold);
  KEKD_ASSIGN_OR_RETURN(std::optional<bool> force, optional_bool(j, "force"));
  p.force = force.value_or(false);
  if (auto it = j.find("operators"); it != j.end() && !it->is_null()) {
    if (!it->is_array()) return Error(Code::kInvalidArgument, "'operators' must be an array");
    std::vector<quorum::Operator> operators;
    for (const Json& member : *it) {
      if (!member.is_object()) {
        return Error(Code::kInvalidArgument, "each operator is {\"name\", \"public_key\"}");
      }
      for (const auto& [name, value] : member.items()) {
        if (name != "name" && name != "public_key") {
          return Error(Code::kInvalidArgument, "unknown member '" + name + "' in an operator");
        }
      }
      KEKD_ASSIGN_OR_RETURN(std::string name, required_string(member, "name"));
      KEKD_ASSIGN_OR_RETURN(std::string pem, required_string(member, "public_key"));
      KEKD_ASSIGN_OR_RETURN(quorum::Operator op, quorum::parse_operator(name, pem));
      operators.push_back(std::move(op));
    }
    p.operators = std::move(operators);
  }
  return p;
}

// Records a ceremony step with its outcome (and the ceremony's key, once known) and passes the
// result on, unless the record failed.
Result<Ceremony> audited(const ApiServices& s, Api::Context& c, audit::AuditEvent event,
                         Result<Ceremony> result) {
  if (result.ok() && !result->terms.key.empty()) event.key = result->terms.key;
  if (result.ok() && result->terms.version) event.version = result->terms.version;
  event.error = failure_of(result);
  KEKD_RETURN_IF_ERROR(record_audit(s, c, std::move(event)));
  return result;
}

Result<std::optional<CeremonyState>> state_filter(const Api::Context& c) {
  std::optional<std::string> state = c.query_param("state");
  if (!state) return std::optional<CeremonyState>();
  for (CeremonyState s : {CeremonyState::kOpen, CeremonyState::kExecuted, CeremonyState::kCancelled,
                          CeremonyState::kExpired, CeremonyState::kFailed}) {
    if (quorum::client_state_name(s) == *state) return std::optional<CeremonyState>(s);
  }
  return Error(Code::kInvalidArgument,
               "state must be one of open, executed, cancelled, expired, failed");
}

}  // namespace

void add_ceremony_routes(std::vector<Route>& routes) {
  routes.push_back({"GET", "/v1/operators", Access::kAuthenticated,
                    [](const ApiServices& s, Api::Context&) -> Result<HttpResponse> {
                      KEKD_ASSIGN_OR_RETURN(quorum::OperatorSet set, s.ceremonies->operators());
                      return json_response(operator_set_json(set));
                    }});
  routes.push_back({"POST", "/v1/ceremonies", Access::kAdmin,
                    [](const ApiServices& s, Api::Context& c) -> Result<HttpResponse> {
                      audit::AuditEvent event = audit_event(c, "ceremony.propose");
                      Result<Ceremony> proposed = [&]() -> Result<Ceremony> {
                        KEKD_ASSIGN_OR_RETURN(quorum::Proposal p, decode_proposal(c.request.body));
                        if (p.key && !p.key->empty()) event.key = p.key;
                        event.version = p.version;
                        return s.ceremonies->propose(p, c.principal->client_id);
                      }();
                      if (proposed.ok()) event.subject = proposed->id();
                      KEKD_ASSIGN_OR_RETURN(Ceremony ceremony,
                                            audited(s, c, std::move(event), std::move(proposed)));
                      return json_response(ceremony_json(ceremony), 201);
                    }});
  routes.push_back({"GET", "/v1/ceremonies", Access::kAuthenticated,
                    [](const ApiServices& s, Api::Context& c) -> Result<HttpResponse> {
                      KEKD_ASSIGN_OR_RETURN(std::optional<CeremonyState> filter, state_filter(c));
                      KEKD_ASSIGN_OR_RETURN(std::vector<Ceremony> list, s.ceremonies->list(filter));
                      Json out = Json::array();
                      for (const Ceremony& ceremony : list) out.push_back(ceremony_json(ceremony));
                      return json_response({{"ceremonies", std::move(out)}});
                    }});
  routes.push_back({"GET", "/v1/ceremonies/{id}", Access::kAuthenticated,
                    [](const ApiServices& s, Api::Context& c) -> Result<HttpResponse> {
                      KEKD_ASSIGN_OR_RETURN(Ceremony ceremony, s.ceremonies->get(c.params[0]));
                      return json_response(ceremony_json(ceremony));
                    }});
  routes.push_back({"GET", "/v1/ceremonies/{id}/statement", Access::kAuthenticated,
                    [](const ApiServices& s, Api::Context& c) -> Result<HttpResponse> {
                      KEKD_ASSIGN_OR_RETURN(Ceremony ceremony, s.ceremonies->get(c.params[0]));
                      return text_response(ceremony.statement, "text/plain; charset=utf-8");
                    }});
  // No bearer token: the operator's signature over the statement is the credential.
  routes.push_back(
      {"POST", "/v1/ceremonies/{id}/approvals", Access::kAnyone,
       [](const ApiServices& s, Api::Context& c) -> Result<HttpResponse> {
         // The principal is the operator the approval claims to be from; whether the signature
         // bore that out is the record's outcome.
         audit::AuditEvent event = audit_event(c, "ceremony.approve");
         event.subject = c.params[0];
         Result<Ceremony> approved = [&]() -> Result<Ceremony> {
           KEKD_ASSIGN_OR_RETURN(Json j, parse_object(c.request.body, {"operator", "signature"}));
           KEKD_ASSIGN_OR_RETURN(std::string op, required_string(j, "operator"));
           event.principal = "operator:" + op;
           KEKD_ASSIGN_OR_RETURN(std::string signature_b64, required_string(j, "signature"));
           KEKD_ASSIGN_OR_RETURN(Bytes signature, decode_base64(signature_b64, "signature"));
           return s.ceremonies->approve(c.params[0], op, signature);
         }();
         KEKD_ASSIGN_OR_RETURN(Ceremony ceremony,
                               audited(s, c, std::move(event), std::move(approved)));
         return json_response(ceremony_json(ceremony));
       }});
  routes.push_back({"POST", "/v1/ceremonies/{id}/cancel", Access::kAdmin,
                    [](const ApiServices& s, Api::Context& c) -> Result<HttpResponse> {
                      audit::AuditEvent event = audit_event(c, "ceremony.cancel");
                      event.subject = c.params[0];
                      Result<Ceremony> cancelled = [&]() -> Result<Ceremony> {
                        if (!c.request.body.empty()) {
                          KEKD_RETURN_IF_ERROR(parse_object(c.request.body, {}));
                        }
                        return s.ceremonies->cancel(c.params[0], c.principal->client_id);
                      }();
                      KEKD_ASSIGN_OR_RETURN(Ceremony ceremony,
                                            audited(s, c, std::move(event), std::move(cancelled)));
                      return json_response(ceremony_json(ceremony));
                    }});
  // {"document", "signature"}: kekd signs the document with its non-extractable audit key, so any
  // altered byte of a stored transcript fails offline verification (verify-transcript.sh).
  routes.push_back(
      {"GET", "/v1/ceremonies/{id}/transcript", Access::kAuthenticated,
       [](const ApiServices& s, Api::Context& c) -> Result<HttpResponse> {
         KEKD_ASSIGN_OR_RETURN(Ceremony ceremony, s.ceremonies->get(c.params[0]));
         KEKD_ASSIGN_OR_RETURN(Bytes spki, s.hsm->signing_public_key(s.signing_key_label));
         KEKD_ASSIGN_OR_RETURN(std::string document, s.ceremonies->transcript_document(
                                                         ceremony, quorum::spki_fingerprint(spki)));
         KEKD_ASSIGN_OR_RETURN(
             Bytes signature,
             s.hsm->sign(s.signing_key_label,
                         ByteView(reinterpret_cast<const std::uint8_t*>(document.data()),
                                  document.size())));
         // Written out by hand so the member order is the spec's, not the JSON library's:
         // compact, a final LF, exactly what `jq -c` prints.
         std::string body = "{\"document\":" + Json(document).dump() + ",\"signature\":" +
                            Json(Botan::base64_encode(signature.data(), signature.size())).dump() +
                            "}\n";
         return text_response(std::move(body), "application/json");
       }});
}

}  // namespace kekd::api
