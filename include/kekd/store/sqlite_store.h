// The embedded metadata store: SQLite in WAL mode.
//
// Schema versions live in PRAGMA user_version; open() applies every forward migration the file
// has not seen yet, each in its own transaction, and refuses a file written by a newer kekd.
// Several processes may open the same file (WAL + busy timeout); within a process one connection
// is shared behind a mutex. One file holds every kind of record (keys, the quorum, clients, audit),
// so a backup is one file and a transaction can span them.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "kekd/store/audit_store.h"
#include "kekd/store/ceremony_store.h"
#include "kekd/store/client_store.h"
#include "kekd/store/metadata_store.h"

struct sqlite3;

namespace kekd::store {

namespace sqlite {
class StatementCache;
}

class SqliteStore final : public MetadataStore,
                          public CeremonyStore,
                          public ClientStore,
                          public AuditStore {
 public:
  // Opens (creating if needed) the database at path and migrates it to the current schema.
  static Result<std::unique_ptr<SqliteStore>> open(const std::string& path);

  // Opens an existing database for reading only (`kekctl audit verify --store`, on a live store
  // or a backup): nothing is created or migrated. kFailedPrecondition if its schema is not the
  // one this build writes; writes through it fail.
  static Result<std::unique_ptr<SqliteStore>> open_read_only(const std::string& path);

  // The schema version this build writes.
  static int current_schema_version();

  ~SqliteStore() override;
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  Result<std::vector<KeyRecord>> list_keys() override;
  Result<std::optional<KeyRecord>> find_key(std::string_view name) override;
  Status create_key(const KeyRecord& key) override;
  Status add_version(std::string_view name, const KeyVersionRecord& version) override;
  Status set_version_state(std::string_view name, std::uint32_t version, KeyState state,
                           std::optional<UnixMillis> destroy_after, UnixMillis updated_at) override;

  // CeremonyStore
  Result<std::optional<OperatorSetRecord>> current_operator_set() override;
  Result<std::optional<OperatorSetRecord>> find_operator_set(std::string_view hash) override;
  Result<std::vector<OperatorSetChange>> operator_set_history() override;
  Status init_operator_set(const OperatorSetRecord& set, UnixMillis at) override;
  Status create_ceremony(const CeremonyRecord& ceremony) override;
  Result<std::optional<CeremonyRecord>> find_ceremony(std::string_view id) override;
  Result<std::vector<CeremonyRecord>> list_ceremonies(std::optional<CeremonyState> state) override;
  Result<CeremonyRecord> add_approval(std::string_view id, const ApprovalRecord& approval) override;
  Status finish_ceremony(std::string_view id, CeremonyState from, CeremonyState to, UnixMillis at,
                         std::string_view result) override;
  Status change_operator_set(std::string_view id, const OperatorSetRecord& new_set, UnixMillis at,
                             std::string_view result, std::string_view cancel_result) override;

  // ClientStore
  Status create_client(const ClientRecord& client) override;
  Result<std::optional<ClientRecord>> find_client(std::string_view id) override;
  Result<std::vector<ClientRecord>> list_clients() override;
  Status delete_client(std::string_view id, UnixMillis at) override;

  // AuditStore (src/store/sqlite_audit_store.cc)
  Status append_audit(std::string_view prev, const std::vector<AuditRecordRow>& records) override;
  Status append_audit_checkpoint(const AuditCheckpointRow& checkpoint, std::string_view hash,
                                 std::int64_t prev_seq) override;
  Result<std::optional<AuditRecordRow>> last_audit() override;
  Result<std::optional<AuditCheckpointRow>> last_audit_checkpoint() override;
  Result<AuditPage> read_audit(std::int64_t after, std::size_t limit) override;

  // The schema version of the open file (after migration, equal to current_schema_version()).
  Result<int> schema_version();

  // Writes a consistent copy of the whole database to a new file at path (SQLite's online backup
  // API), while other calls go on (src/store/sqlite_backup.cc).
  Status backup_to(const std::string& path);

 private:
  explicit SqliteStore(sqlite3* db);

  std::mutex mu_;
  sqlite3* db_;
  // The audit writer's statements, prepared once (src/store/sqlite_util.h); guarded by mu_.
  std::unique_ptr<sqlite::StatementCache> statements_;
};

}  // namespace kekd::store
