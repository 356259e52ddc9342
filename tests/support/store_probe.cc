// kekd_store_probe: opens a kekd store from a second process, so tests can prove that what one
// process commits another one sees, while both have the file open.
//
//   kekd_store_probe list PATH              one line per key version: name id version state
//   kekd_store_probe create PATH NAME ID    a key with one enabled version
//
// Exits 0 on success, 1 with the error on stderr on failure, 2 on a usage error.
#include <chrono>
#include <iostream>
#include <string>

#include "kekd/store/sqlite_store.h"

namespace {

using kekd::store::KeyRecord;
using kekd::store::KeyState;
using kekd::store::KeyVersionRecord;
using kekd::store::SqliteStore;

int fail(const kekd::Error& error) {
  std::cerr << "kekd_store_probe: " << error.to_string() << "\n";
  return 1;
}

int list(SqliteStore& store) {
  auto keys = store.list_keys();
  if (!keys.ok()) {
    return fail(keys.error());
  }
  for (const KeyRecord& key : *keys) {
    for (const KeyVersionRecord& version : key.versions) {
      std::cout << key.name << ' ' << key.id << ' ' << version.version << ' '
                << kekd::store::state_name(version.state) << '\n';
    }
  }
  return 0;
}

int create(SqliteStore& store, const std::string& name, const std::string& id) {
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  KeyVersionRecord version;
  version.version = 1;
  version.state = KeyState::kEnabled;
  version.created_at = now;
  version.updated_at = now;
  KeyRecord key;
  key.name = name;
  key.id = id;
  key.created_at = now;
  key.versions.push_back(version);
  kekd::Status status = store.create_key(key);
  return status.ok() ? 0 : fail(status.error());
}

}  // namespace

int main(int argc, char** argv) {
  std::string command = argc > 1 ? argv[1] : "";
  if (!((command == "list" && argc == 3) || (command == "create" && argc == 5))) {
    std::cerr << "usage: kekd_store_probe list PATH\n"
                 "       kekd_store_probe create PATH NAME ID\n";
    return 2;
  }
  auto store = SqliteStore::open(argv[2]);
  if (!store.ok()) {
    return fail(store.error());
  }
  return command == "list" ? list(**store) : create(**store, argv[3], argv[4]);
}
