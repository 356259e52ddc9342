// The audit log as the API sees it: recording the events of a request, and reading the log back
// (GET /v1/audit, admin; docs/audit.md). The public key is in api.cc, open to every client.
#include "kekd/audit/export.h"
#include "routes.h"

namespace kekd::api {
namespace {

constexpr std::size_t kDefaultAuditPage = 1000;
constexpr std::size_t kMaxAuditPage = 10000;

// A query parameter that must be a decimal integer in [min, max] when present.
Result<std::optional<std::int64_t>> integer_param(const Api::Context& c, std::string_view name,
                                                  std::int64_t min, std::int64_t max) {
  std::optional<std::string> text = c.query_param(name);
  if (!text) return std::optional<std::int64_t>();
  std::int64_t value = 0;
  bool ok = !text->empty() && text->size() <= 18;
  for (char ch : *text) {
    ok = ok && ch >= '0' && ch <= '9';
    if (ok) value = value * 10 + (ch - '0');
  }
  if (!ok || value < min || value > max) {
    // Built with append: GCC 12 at -O3 sees a false -Wrestrict in a chain of operator+ here.
    std::string message = "'";
    message.append(name).append("' must be an integer from ");
    message.append(std::to_string(min)).append(" to ").append(std::to_string(max));
    return Error(Code::kInvalidArgument, std::move(message));
  }
  return std::optional<std::int64_t>(value);
}

}  // namespace

audit::AuditEvent audit_event(const Api::Context& c, std::string action) {
  audit::AuditEvent event;
  event.request_id = c.request.request_id;
  if (c.principal) event.principal = c.principal->client_id;
  event.action = std::move(action);
  return event;
}

Status record_audit(const ApiServices& s, Api::Context& c, std::vector<audit::AuditEvent> events) {
  c.audited = true;
  if (s.audit == nullptr) return Error(Code::kInternal, "no audit log is configured");
  // What comes from the request (a key name in the path, the claimed operator) is recorded cut
  // to the record's bounds rather than refused: the request must still leave its record.
  for (audit::AuditEvent& e : events) {
    e.request_id = audit::bounded(e.request_id, audit::kMaxRequestIdBytes);
    e.principal = audit::bounded(e.principal, audit::kMaxPrincipalBytes);
    if (e.key) e.key = audit::bounded(*e.key, audit::kMaxKeyBytes);
    if (e.subject) e.subject = audit::bounded(*e.subject, audit::kMaxSubjectBytes);
    c.audit_events.push_back(std::move(e));
  }
  return ok_status();
}

Error audit_unavailable(const Error& error) {
  return Error(Code::kUnavailable,
               "the audit log could not record this request, so its result is withheld; retry "
               "later (" +
                   error.message() + ")");
}

Status record_audit(const ApiServices& s, Api::Context& c, audit::AuditEvent event) {
  std::vector<audit::AuditEvent> events;
  events.push_back(std::move(event));
  return record_audit(s, c, std::move(events));
}

void add_audit_routes(std::vector<Route>& routes) {
  // {"entries": [record and checkpoint lines of docs/audit.md, as they are], "next": seq}: the
  // entries are the export format itself, so `kekctl audit export` writes them out unchanged.
  routes.push_back(
      {"GET", "/v1/audit", Access::kAdmin,
       [](const ApiServices& s, Api::Context& c) -> Result<HttpResponse> {
         KEKD_ASSIGN_OR_RETURN(std::optional<std::int64_t> after,
                               integer_param(c, "after", 0, INT64_C(999999999999999999)));
         KEKD_ASSIGN_OR_RETURN(std::optional<std::int64_t> limit,
                               integer_param(c, "limit", 1, kMaxAuditPage));
         KEKD_ASSIGN_OR_RETURN(
             audit::ExportPage page,
             audit::export_page(*s.audit_store, after.value_or(0),
                                static_cast<std::size_t>(limit.value_or(kDefaultAuditPage))));
         std::string body = "{\"entries\":[";
         for (std::size_t i = 0; i < page.lines.size(); ++i) {
           if (i != 0) body += ',';
           body += page.lines[i];
         }
         body += "],\"next\":" + std::to_string(page.next) + "}";
         return text_response(std::move(body), "application/json");
       }});
}

}  // namespace kekd::api
