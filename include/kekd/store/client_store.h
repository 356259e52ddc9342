// Persistence of API clients (DESIGN §6): an id, the client's secret wrapped by a token key,
// whether it is an admin, and its grants.
//
// Security model: nothing here is usable without the HSM. The secret is stored only wrapped
// (SigV4 needs the secret itself, so it cannot be a one-way hash); unwrapping it needs the token.
// A deleted client is kept (deleted_at set) so that its id is never handed out again, but it is
// invisible to find_client: authentication cannot accidentally accept it.
//
// Contract: as MetadataStore (each method atomic, thread-safe, an ok Status means durable).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kekd/common/bytes.h"
#include "kekd/common/error.h"
#include "kekd/store/metadata_store.h"

namespace kekd::store {

inline constexpr std::size_t kMaxClientIdLength = 64;
inline constexpr std::size_t kMaxWrappedSecretBytes = 1024;
inline constexpr std::size_t kMaxGrantsJsonBytes = 64 * 1024;

struct ClientRecord {
  std::string id;        // [A-Za-z0-9_-]{1,64}: no '.', which separates id and secret in tokens
  Bytes wrapped_secret;  // 1..1024 bytes, as the token wrapped it
  bool admin = false;
  std::string grants_json;  // the grants as JSON text (api/ owns their meaning); not empty
  UnixMillis created_at = 0;
  std::optional<UnixMillis> deleted_at;

  bool operator==(const ClientRecord&) const = default;
};

class ClientStore {
 public:
  virtual ~ClientStore() = default;

  // kAlreadyExists if the id was ever used (deleted clients included); kInvalidArgument for a
  // record out of the bounds above or with deleted_at set.
  virtual Status create_client(const ClientRecord& client) = 0;

  // The client with this id unless it was deleted.
  virtual Result<std::optional<ClientRecord>> find_client(std::string_view id) = 0;

  // The clients that are not deleted, oldest first.
  virtual Result<std::vector<ClientRecord>> list_clients() = 0;

  // Marks the client deleted. kNotFound if there is no such client or it is deleted already.
  virtual Status delete_client(std::string_view id, UnixMillis at) = 0;
};

}  // namespace kekd::store
