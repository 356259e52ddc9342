// The embedded metadata store: SQLite in WAL mode.
//
// Schema versions live in PRAGMA user_version; open() applies every forward migration the file
// has not seen yet, each in its own transaction, and refuses a file written by a newer kekd.
// Several processes may open the same file (WAL + busy timeout); within a process one connection
// is shared behind a mutex.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "kekd/store/metadata_store.h"

struct sqlite3;

namespace kekd::store {

class SqliteStore final : public MetadataStore {
 public:
  // Opens (creating if needed) the database at path and migrates it to the current schema.
  static Result<std::unique_ptr<SqliteStore>> open(const std::string& path);

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

  // The schema version of the open file (after migration, equal to current_schema_version()).
  Result<int> schema_version();

 private:
  explicit SqliteStore(sqlite3* db);

  std::mutex mu_;
  sqlite3* db_;
};

}  // namespace kekd::store
