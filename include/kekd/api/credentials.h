// Client credentials: `<client-id>.<secret>` bearer tokens (DESIGN §6).
//
// Security model: the store never holds a usable secret. Each secret is kept wrapped by an
// internal, non-extractable token key (label kKeyLabel), framed like a DEK with the client id as
// encryption context, so a wrapped secret cannot be moved to another client's record. (SigV4
// needs the secret itself, which is why it is wrapped rather than hashed.) A dump of the store is
// useless without the HSM. Secrets are compared in constant time. So that the HSM is not asked per
// request, a client's stored bearer secret is remembered as its SHA-256 once opened (also after a
// wrong attempt, so that wrong secrets do not reach the HSM), and for SigV4 the derived
// signing key of a client's day, region and service (as good as the secret for that one scope, and
// wiped with it). Deleting a client drops both at once.
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "kekd/api/grants.h"
#include "kekd/common/bytes.h"
#include "kekd/common/error.h"
#include "kekd/common/time.h"
#include "kekd/hsm/hsm.h"
#include "kekd/store/client_store.h"

namespace kekd::api {

struct Principal {
  std::string client_id;
  bool admin = false;
  std::vector<Grant> grants;  // parsed once, when the client is first verified
};

struct NewClient {
  std::string client_id;
  SecretBytes secret;  // shown once, never stored in clear
  std::string token() const;
};

class Credentials {
 public:
  static constexpr std::string_view kKeyLabel = "kekd-internal:client-secrets";

  Credentials(hsm::Hsm& hsm, store::ClientStore& store) : hsm_(hsm), store_(store) {}

  // Creates the internal key that wraps client secrets (once, at `kekd init`).
  static Status create_token_key(hsm::Hsm& hsm);

  Result<NewClient> create(bool admin, std::string grants_json, UnixMillis now);

  // Checks "Bearer <client-id>.<secret>". Every failure is kUnauthenticated with one message, so
  // that the answer does not reveal whether the client id exists.
  Result<Principal> authenticate(std::string_view authorization);

  // The client id a refused Authorization header claims, for its audit record: the part of
  // "Bearer <client-id>.<secret>" before the '.' when it has the shape create() gives ids, else
  // "". A pasted secret, or anything else, is never returned.
  static std::string claimed_client_id(std::string_view authorization);
  // True if the text has the shape create() gives client ids (it may still name no client).
  static bool has_client_id_shape(std::string_view id);

  // For AWS Signature V4 (the KMS API): the client's principal and its signing key for one day,
  // region and service (sigv4::signing_key). The secret is unwrapped from the token once per
  // client and scope and wiped at once; only the derived key, which is good for that one day,
  // region and service, is kept. kUnauthenticated for an unknown or deleted client.
  struct SigningIdentity {
    Principal principal;
    SecretBytes signing_key;
  };
  Result<SigningIdentity> signing_identity(const std::string& client_id, std::string_view date,
                                           std::string_view region, std::string_view service);

  // The clients that are not deleted, oldest first.
  Result<std::vector<store::ClientRecord>> list();

  // Deletes an application client; it is refused at its next request. The admin credential is not
  // deleted this way (kFailedPrecondition): a deployment must not lock itself out.
  Status remove(const std::string& client_id, UnixMillis now);

 private:
  struct Verified {
    std::array<std::uint8_t, 32> secret_sha256;
    Principal principal;
  };

  struct Signing {
    std::string scope;  // "<date>/<region>/<service>"
    SigningIdentity identity;
  };

  void forget(const std::string& client_id);
  // The client's secret out of the token, and its principal; kUnauthenticated if it is unknown.
  struct Opened {
    SecretBytes secret;
    Principal principal;
  };
  Result<Opened> open(const std::string& client_id);

  hsm::Hsm& hsm_;
  store::ClientStore& store_;
  std::shared_mutex mu_;
  std::map<std::string, Verified, std::less<>> verified_;
  std::map<std::string, std::vector<Signing>, std::less<>> signing_;  // at most two per client
  std::uint64_t generation_ = 0;  // counts forget(): a fill that straddles one is not cached
};

}  // namespace kekd::api
