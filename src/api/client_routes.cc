// Application clients and their grants (DESIGN §6): admin only. The secret is shown once.
#include <botan/mem_ops.h>

#include "kekd/common/time.h"
#include "routes.h"

namespace kekd::api {
namespace {

Json client_json(const store::ClientRecord& record) {
  Json grants = Json::parse(record.grants_json, nullptr, false);
  return {{"client_id", record.id},
          {"admin", record.admin},
          {"grants", grants.is_discarded() ? Json::array() : grants},
          {"created_at", format_rfc3339(record.created_at)}};
}

}  // namespace

void add_client_routes(std::vector<Route>& routes) {
  routes.push_back({"POST", "/v1/clients", Access::kAdmin,
                    [](const ApiServices& s, Api::Context& c) -> Result<HttpResponse> {
                      std::vector<Grant> grants;
                      audit::AuditEvent event = audit_event(c, "client.create");
                      Result<NewClient> created = [&]() -> Result<NewClient> {
                        KEKD_ASSIGN_OR_RETURN(Json body, parse_object(c.request.body, {"grants"}));
                        auto grants_member = body.find("grants");
                        std::string grants_text =
                            grants_member == body.end() ? "[]" : grants_member->dump();
                        KEKD_ASSIGN_OR_RETURN(std::vector<Grant> parsed, parse_grants(grants_text));
                        grants = std::move(parsed);
                        return s.credentials->create(false, grants_to_json(grants), now_millis());
                      }();
                      if (created.ok()) event.subject = created->client_id;
                      event.error = failure_of(created);
                      KEKD_RETURN_IF_ERROR(record_audit(s, c, std::move(event)));
                      KEKD_ASSIGN_OR_RETURN(NewClient client, std::move(created));
                      std::string secret(client.secret.begin(), client.secret.end());
                      std::string token = client.token();
                      Json out = {{"client_id", client.client_id},
                                  {"secret", secret},
                                  {"token", token},
                                  {"grants", Json::parse(grants_to_json(grants))}};
                      Botan::secure_scrub_memory(secret.data(), secret.size());
                      Botan::secure_scrub_memory(token.data(), token.size());
                      return json_response(out, 201);
                    }});
  routes.push_back({"GET", "/v1/clients", Access::kAdmin,
                    [](const ApiServices& s, Api::Context&) -> Result<HttpResponse> {
                      KEKD_ASSIGN_OR_RETURN(std::vector<store::ClientRecord> records,
                                            s.credentials->list());
                      Json out = Json::array();
                      for (const store::ClientRecord& r : records) out.push_back(client_json(r));
                      return json_response({{"clients", std::move(out)}});
                    }});
  routes.push_back({"DELETE", "/v1/clients/{id}", Access::kAdmin,
                    [](const ApiServices& s, Api::Context& c) -> Result<HttpResponse> {
                      Status removed = s.credentials->remove(c.params[0], now_millis());
                      audit::AuditEvent event = audit_event(c, "client.delete");
                      event.subject = c.params[0];
                      event.error = failure_of(removed);
                      KEKD_RETURN_IF_ERROR(record_audit(s, c, std::move(event)));
                      KEKD_RETURN_IF_ERROR(removed);
                      return json_response({{"client_id", c.params[0]}, {"deleted", true}});
                    }});
}

}  // namespace kekd::api
