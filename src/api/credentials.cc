#include "kekd/api/credentials.h"

#include <botan/base64.h>
#include <botan/hash.h>
#include <botan/mem_ops.h>

#include "kekd/api/sigv4.h"
#include "kekd/keys/inner_payload.h"

namespace kekd::api {
namespace {

constexpr std::size_t kSecretBytes = 32;
constexpr std::size_t kIdBytes = 10;  // hex-encoded after the "cli_" or "adm_" prefix
constexpr std::string_view kScheme = "Bearer ";

Error unauthenticated() { return Error(Code::kUnauthenticated, "missing or invalid credentials"); }

// The secret is bound to its client: the wrap's context names the client id.
keys::ContextDigest binding(std::string_view client_id) {
  return keys::context_digest({{"kekd-client", std::string(client_id)}});
}

std::array<std::uint8_t, 32> sha256(ByteView bytes) {
  auto h = Botan::HashFunction::create_or_throw("SHA-256");
  h->update(bytes.data(), bytes.size());
  std::array<std::uint8_t, 32> out;
  h->final(out.data());
  return out;
}

// base64url without padding: the token has no '.', '/', '+' or '=' to escape anywhere.
std::string base64url(ByteView bytes) {
  std::string s = Botan::base64_encode(bytes.data(), bytes.size());
  while (!s.empty() && s.back() == '=') s.pop_back();
  for (char& c : s) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  return s;
}

}  // namespace

std::string NewClient::token() const {
  return client_id + "." + std::string(secret.begin(), secret.end());
}

Status Credentials::create_token_key(hsm::Hsm& hsm) {
  // The same template as a KEK: AES-256, non-extractable, wrap/unwrap with KWP only.
  return hsm.generate_kek(kKeyLabel);
}

Result<NewClient> Credentials::create(bool admin, std::string grants_json, UnixMillis now) {
  KEKD_ASSIGN_OR_RETURN(SecretBytes id_bytes, hsm_.random(kIdBytes));
  KEKD_ASSIGN_OR_RETURN(SecretBytes raw, hsm_.random(kSecretBytes));
  NewClient client;
  client.client_id = (admin ? "adm_" : "cli_") + to_hex(id_bytes);
  std::string encoded = base64url(raw);
  client.secret.assign(encoded.begin(), encoded.end());
  Botan::secure_scrub_memory(encoded.data(), encoded.size());

  KEKD_ASSIGN_OR_RETURN(SecretBytes payload,
                        keys::build_payload(binding(client.client_id), client.secret));
  KEKD_ASSIGN_OR_RETURN(Bytes wrapped, hsm_.wrap(kKeyLabel, payload));
  store::ClientRecord record;
  record.id = client.client_id;
  record.wrapped_secret = std::move(wrapped);
  record.admin = admin;
  record.grants_json = std::move(grants_json);
  record.created_at = now;
  KEKD_RETURN_IF_ERROR(store_.create_client(record));
  return client;
}

std::string Credentials::claimed_client_id(std::string_view authorization) {
  if (!authorization.starts_with(kScheme)) return "";
  std::string_view token = authorization.substr(kScheme.size());
  std::string_view id = token.substr(0, token.find('.'));
  if (id.size() == token.size() || !has_client_id_shape(id)) return "";
  return std::string(id);
}

bool Credentials::has_client_id_shape(std::string_view id) {
  if (id.size() != 4 + 2 * kIdBytes || !(id.starts_with("cli_") || id.starts_with("adm_"))) {
    return false;
  }
  for (char ch : id.substr(4)) {
    if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) return false;
  }
  return true;
}

Result<Principal> Credentials::authenticate(std::string_view authorization) {
  if (!authorization.starts_with(kScheme)) {
    return unauthenticated();
  }
  std::string_view token = authorization.substr(kScheme.size());
  std::size_t dot = token.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot + 1 == token.size() || token.size() > 256) {
    return unauthenticated();
  }
  const std::string client_id(token.substr(0, dot));
  std::string_view secret = token.substr(dot + 1);
  auto given =
      sha256(ByteView(reinterpret_cast<const std::uint8_t*>(secret.data()), secret.size()));

  std::uint64_t generation;
  {
    std::shared_lock lock(mu_);
    auto it = verified_.find(client_id);
    if (it != verified_.end()) {
      if (!Botan::constant_time_compare(it->second.secret_sha256.data(), given.data(), 32)) {
        return unauthenticated();
      }
      return it->second.principal;
    }
    generation = generation_;
  }

  KEKD_ASSIGN_OR_RETURN(Opened opened, open(client_id));
  auto expected = sha256(opened.secret);
  {
    // Cached whether or not this attempt matches: the entry holds the stored secret's hash, not
    // the caller's, and without it every wrong secret for a real client id (ids are not secret)
    // would cost an HSM unwrap. A client deleted while its secret was being opened must not come
    // back into the cache.
    std::unique_lock lock(mu_);
    if (generation == generation_) {
      verified_.insert_or_assign(client_id, Verified{expected, opened.principal});
    }
  }
  if (!Botan::constant_time_compare(expected.data(), given.data(), 32)) {
    return unauthenticated();
  }
  return std::move(opened.principal);
}

Result<Credentials::Opened> Credentials::open(const std::string& client_id) {
  KEKD_ASSIGN_OR_RETURN(std::optional<store::ClientRecord> record, store_.find_client(client_id));
  if (!record || record->deleted_at) {
    return unauthenticated();
  }
  Result<SecretBytes> payload = hsm_.unwrap(kKeyLabel, record->wrapped_secret);
  if (!payload.ok()) {
    // An HSM outage is not the client's fault: say so (503) rather than 401.
    if (payload.error().code() == Code::kUnavailable) return payload.error();
    return Error(Code::kInternal, "a stored client secret does not unwrap");
  }
  KEKD_ASSIGN_OR_RETURN(SecretBytes secret, keys::open_payload(*payload, binding(client_id)));
  Result<std::vector<Grant>> grants = parse_grants(record->grants_json);
  if (!grants.ok()) {
    return Error(Code::kInternal, "stored grants of " + client_id + " do not parse");
  }
  return Opened{std::move(secret), Principal{client_id, record->admin, std::move(*grants)}};
}

Result<Credentials::SigningIdentity> Credentials::signing_identity(const std::string& client_id,
                                                                   std::string_view date,
                                                                   std::string_view region,
                                                                   std::string_view service) {
  std::string scope = std::string(date) + "/" + std::string(region) + "/" + std::string(service);
  std::uint64_t generation;
  {
    std::shared_lock lock(mu_);
    auto it = signing_.find(client_id);
    if (it != signing_.end()) {
      for (const Signing& s : it->second) {
        if (s.scope == scope) return s.identity;
      }
    }
    generation = generation_;
  }
  // The id is checked before the store is asked: the access key id is anyone's input.
  if (client_id.size() > 64) return unauthenticated();
  KEKD_ASSIGN_OR_RETURN(Opened opened, open(client_id));
  SigningIdentity identity{std::move(opened.principal),
                           sigv4::signing_key(opened.secret, date, region, service)};
  std::unique_lock lock(mu_);
  // A client deleted while its secret was being opened must not come back into the cache.
  if (generation != generation_) return identity;
  // Two scopes per client: around midnight UTC both dates are within the clock skew, and a request
  // for one (even a forged one: the key is cached before the signature is checked) must not evict
  // the other. The caller has already refused every other region and service.
  std::vector<Signing>& entries = signing_[client_id];
  if (entries.size() == 2) {
    entries.erase(entries[0].scope < entries[1].scope ? entries.begin() : entries.begin() + 1);
  }
  entries.push_back(Signing{std::move(scope), identity});
  return identity;
}

Result<std::vector<store::ClientRecord>> Credentials::list() { return store_.list_clients(); }

Status Credentials::remove(const std::string& client_id, UnixMillis now) {
  KEKD_ASSIGN_OR_RETURN(std::optional<store::ClientRecord> record, store_.find_client(client_id));
  if (!record) {
    return Error(Code::kNotFound, "no client " + client_id);
  }
  if (record->admin) {
    return Error(Code::kFailedPrecondition, "the admin credential is not deleted through the API");
  }
  KEKD_RETURN_IF_ERROR(store_.delete_client(client_id, now));
  forget(client_id);
  return ok_status();
}

void Credentials::forget(const std::string& client_id) {
  std::unique_lock lock(mu_);
  ++generation_;
  verified_.erase(client_id);
  signing_.erase(client_id);
}

}  // namespace kekd::api
