// The application API (DESIGN §7): data keys, wrap, unwrap, rewrap (single and batch), and the
// key descriptions clients may read.
#include <botan/mem_ops.h>

#include "errors.h"
#include "kekd/common/time.h"
#include "kekd/keys/ciphertext.h"
#include "routes.h"

namespace kekd::api {
namespace {

constexpr std::size_t kMaxBatch = 1000;

Error bad(std::string message) { return Error(Code::kInvalidArgument, std::move(message)); }
Status check_members(const Json& item, std::initializer_list<std::string_view> allowed) {
  if (!item.is_object()) return bad("each item must be a JSON object");
  for (const auto& [name, value] : item.items()) {
    bool known = false;
    for (std::string_view a : allowed) known = known || a == name;
    if (!known) return bad("unknown member '" + name + "'");
  }
  return ok_status();
}

Result<Json> datakey(keys::Keyring& keyring, const std::string& key, const Json& item) {
  KEKD_RETURN_IF_ERROR(check_members(item, {"bytes", "context", "plaintext"}));
  KEKD_ASSIGN_OR_RETURN(std::optional<std::uint64_t> bytes,
                        optional_uint(item, "bytes", 1, keys::kMaxDataKeyBytes));
  KEKD_ASSIGN_OR_RETURN(std::optional<bool> plaintext, optional_bool(item, "plaintext"));
  KEKD_ASSIGN_OR_RETURN(keys::EncryptionContext context, context_member(item, "context"));
  KEKD_ASSIGN_OR_RETURN(
      keys::DataKey dk,
      keyring.generate_data_key(key, bytes.value_or(32), context, plaintext.value_or(true)));
  Json out = {
      {"key", dk.key}, {"version", dk.version}, {"ciphertext", encode_base64(dk.ciphertext)}};
  if (dk.plaintext) out["plaintext"] = encode_base64(*dk.plaintext);
  return out;
}

Result<Json> wrap(keys::Keyring& keyring, const std::string& key, const Json& item) {
  KEKD_RETURN_IF_ERROR(check_members(item, {"plaintext", "context"}));
  KEKD_ASSIGN_OR_RETURN(std::string text, required_string(item, "plaintext"));
  KEKD_ASSIGN_OR_RETURN(SecretBytes plaintext, decode_base64(text, "plaintext"));
  Botan::secure_scrub_memory(text.data(), text.size());
  KEKD_ASSIGN_OR_RETURN(keys::EncryptionContext context, context_member(item, "context"));
  KEKD_ASSIGN_OR_RETURN(keys::Wrapped w, keyring.wrap(key, plaintext, context));
  return Json{{"key", w.key}, {"version", w.version}, {"ciphertext", encode_base64(w.ciphertext)}};
}

// The body of unwrap and rewrap: a ciphertext and its context. Input that is not base64 is not a
// ciphertext, and gets the one invalid_ciphertext error.
struct CiphertextItem {
  Bytes ciphertext;
  keys::EncryptionContext context;
};

Result<CiphertextItem> decode_ciphertext_item(const Json& item) {
  KEKD_RETURN_IF_ERROR(check_members(item, {"ciphertext", "context"}));
  KEKD_ASSIGN_OR_RETURN(std::string text, required_string(item, "ciphertext"));
  Result<SecretBytes> ciphertext = decode_base64(text, "ciphertext");
  if (!ciphertext.ok()) return keys::invalid_ciphertext();
  KEKD_ASSIGN_OR_RETURN(keys::EncryptionContext context, context_member(item, "context"));
  return CiphertextItem{Bytes(ciphertext->begin(), ciphertext->end()), std::move(context)};
}

Result<Json> unwrap(keys::Keyring& keyring, const std::string& key, const Json& item) {
  KEKD_ASSIGN_OR_RETURN(CiphertextItem in, decode_ciphertext_item(item));
  KEKD_ASSIGN_OR_RETURN(keys::Unwrapped u, keyring.unwrap(key, in.ciphertext, in.context));
  return Json{{"key", u.key}, {"version", u.version}, {"plaintext", encode_base64(u.plaintext)}};
}

Result<Json> rewrap(keys::Keyring& keyring, const std::string& key, const Json& item) {
  KEKD_ASSIGN_OR_RETURN(CiphertextItem in, decode_ciphertext_item(item));
  KEKD_ASSIGN_OR_RETURN(keys::Wrapped w, keyring.rewrap(key, in.ciphertext, in.context));
  return Json{{"key", w.key}, {"version", w.version}, {"ciphertext", encode_base64(w.ciphertext)}};
}

using ItemFn = Result<Json> (*)(keys::Keyring&, const std::string&, const Json&);

// One route per operation; the body is one item, or {"items": [...]} for a batch, answered with
// a result or an error per item, in order.
RouteHandler key_operation(Operation operation, ItemFn fn) {
  return [operation, fn](const ApiServices& s, Api::Context& c) -> Result<HttpResponse> {
    const std::string& key = c.params[0];
    const std::string_view name = operation_name(operation);
    const std::string action = "key." + std::string(name);
    // One audit event per item, with the version that did the work when there is one.
    std::vector<audit::AuditEvent> events;
    auto run = [&](const Json& item) {
      Result<Json> r = fn(*s.keyring, key, item);
      s.metrics->observe_key_operation(name, r.ok() ? "ok" : code_name(r.error().code()));
      audit::AuditEvent event = audit_event(c, action);
      event.key = key;
      if (r.ok()) event.version = (*r)["version"].get<std::uint32_t>();
      event.error = failure_of(r);
      events.push_back(std::move(event));
      return r;
    };
    // A request refused as a whole (no grant, a body that is not an operation at all) is still
    // one refused operation in the log.
    auto refuse = [&](Error error) -> Result<HttpResponse> {
      audit::AuditEvent event = audit_event(c, action);
      event.key = key;
      event.error = error.code();
      KEKD_RETURN_IF_ERROR(record_audit(s, c, std::move(event)));
      return error;
    };
    // Authorisation before anything else: a client learns nothing about keys it may not use.
    if (!allows(c.principal->grants, key, operation)) {
      return refuse(Error(Code::kPermissionDenied,
                          "this client has no grant for that operation on '" + key + "'"));
    }
    // Each item's members are checked by fn; here only what a body of any operation may hold.
    Result<Json> parsed =
        parse_object(c.request.body, {"items", "bytes", "context", "plaintext", "ciphertext"});
    if (!parsed.ok()) return refuse(parsed.error());
    const Json& body = *parsed;
    auto items = body.find("items");
    if (items == body.end()) {
      Result<Json> result = run(body);
      KEKD_RETURN_IF_ERROR(record_audit(s, c, std::move(events)));
      KEKD_ASSIGN_OR_RETURN(Json answer, std::move(result));
      return json_response(answer);
    }
    if (body.size() != 1) return refuse(bad("a batch body has only 'items'"));
    if (!items->is_array() || items->empty()) {
      return refuse(bad("'items' must be a non-empty array"));
    }
    if (items->size() > kMaxBatch) {
      return refuse(Error(Code::kPayloadTooLarge, "a batch has at most 1000 items"));
    }
    events.reserve(items->size());
    Json results = Json::array();
    {
      // The items run on one HSM session, given back before the wait for the audit.
      std::unique_ptr<hsm::Hsm::SessionHold> hold = s.keyring->hold_session();
      for (const Json& item : *items) {
        Result<Json> r = run(item);
        if (r.ok()) {
          results.push_back(std::move(*r));
        } else {
          std::string message = client_message(r.error(), c.request.request_id);
          results.push_back(
              {{"error",
                {{"code", std::string(code_name(r.error().code()))}, {"message", message}}}});
        }
      }
    }
    // Answered only once every item's record is durable: one wait for the whole batch.
    KEKD_RETURN_IF_ERROR(record_audit(s, c, std::move(events)));
    return json_response({{"items", std::move(results)}});
  };
}

}  // namespace

void add_key_routes(std::vector<Route>& routes) {
  routes.push_back({"POST", "/v1/keys/{name}/datakey", Access::kAuthenticated,
                    key_operation(Operation::kDatakey, datakey)});
  routes.push_back({"POST", "/v1/keys/{name}/wrap", Access::kAuthenticated,
                    key_operation(Operation::kWrap, wrap)});
  routes.push_back({"POST", "/v1/keys/{name}/unwrap", Access::kAuthenticated,
                    key_operation(Operation::kUnwrap, unwrap)});
  routes.push_back({"POST", "/v1/keys/{name}/rewrap", Access::kAuthenticated,
                    key_operation(Operation::kRewrap, rewrap)});
}

}  // namespace kekd::api
