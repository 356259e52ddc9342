#include "kekd/store/sqlite_store.h"
#include "support/temp_dir.h"

#include <doctest/doctest.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace kekd::store {
namespace {

using kekd::testing::TempDir;

KeyVersionRecord make_version(std::uint32_t number, KeyState state = KeyState::kEnabled,
                              std::optional<UnixMillis> destroy_after = std::nullopt) {
  KeyVersionRecord v;
  v.version = number;
  v.state = state;
  v.created_at = 1'700'000'000'000 + number;
  v.updated_at = 1'700'000'000'500 + number;
  v.ceremony_id = "ceremony-" + std::to_string(number);
  v.destroy_after = destroy_after;
  return v;
}

KeyRecord make_key(const std::string& name, const std::string& id, std::uint32_t versions = 1) {
  KeyRecord key;
  key.name = name;
  key.id = id;
  key.created_at = 1'690'000'000'000;
  for (std::uint32_t v = 1; v <= versions; ++v) {
    key.versions.push_back(make_version(v));
  }
  return key;
}

std::unique_ptr<SqliteStore> open_store(const std::string& path) {
  auto store = SqliteStore::open(path);
  REQUIRE_MESSAGE(store.ok(), store.error().to_string());
  return std::move(store).value();
}

std::vector<KeyRecord> list(SqliteStore& store) {
  auto keys = store.list_keys();
  REQUIRE_MESSAGE(keys.ok(), keys.error().to_string());
  return *keys;
}

void require_ok(const Status& status) { REQUIRE_MESSAGE(status.ok(), status.error().to_string()); }

// Writes the schema version directly, as a newer kekd would have.
void set_user_version(const std::string& path, int version) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open(path.c_str(), &db);
  std::string sql = "PRAGMA user_version = " + std::to_string(version);
  if (rc == SQLITE_OK) {
    rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
  }
  sqlite3_close(db);
  REQUIRE(rc == SQLITE_OK);
}

// A store holding two keys, one with two versions, and the records it holds.
struct Populated {
  TempDir dir;
  std::unique_ptr<SqliteStore> store = open_store(dir.file("kekd.db"));
  std::vector<KeyRecord> expected;

  Populated() {
    expected = {make_key("alpha", "11111111-1111-4111-8111-111111111111", 2),
                make_key("beta", "22222222-2222-4222-8222-222222222222")};
    for (const KeyRecord& key : expected) {
      require_ok(store->create_key(key));
    }
  }

  // The data after a refused call must be exactly what it was before.
  void check_unchanged() { CHECK(list(*store) == expected); }
};

TEST_CASE("StateNameRoundTripsThroughParseState") {
  for (KeyState state : {KeyState::kEnabled, KeyState::kDisabled, KeyState::kDestroyScheduled,
                         KeyState::kDestroyed}) {
    CHECK(parse_state(state_name(state)) == state);
  }
  CHECK(state_name(KeyState::kDestroyScheduled) == "destroy_scheduled");
}

TEST_CASE("ParseStateRejectsUnknownName") {
  CHECK_FALSE(parse_state("Enabled").has_value());
  CHECK_FALSE(parse_state("").has_value());
}

TEST_CASE("OpenSetsCurrentSchemaVersion") {
  TempDir dir;
  auto store = open_store(dir.file("kekd.db"));
  auto version = store->schema_version();
  REQUIRE(version.ok());
  CHECK(*version == SqliteStore::current_schema_version());
  CHECK(SqliteStore::current_schema_version() >= 1);
}

TEST_CASE("OpenUsesWalJournal") {
  TempDir dir;
  std::string path = dir.file("kekd.db");
  open_store(path).reset();
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(stmt) == SQLITE_ROW);
  std::string mode = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  CHECK(mode == "wal");
}

TEST_CASE("OpenCreatesAPrivateStoreWhateverTheUmask") {
  TempDir dir;
  std::string path = dir.file("kekd.db");
  mode_t previous = ::umask(0);  // the widest umask: the store must still be 0600
  auto store = open_store(path);
  ::umask(previous);
  REQUIRE(store->schema_version().ok());  // written, so -wal and -shm exist too
  for (const std::string& file : {path, path + "-wal", path + "-shm"}) {
    CAPTURE(file);
    REQUIRE(std::filesystem::exists(file));
    CHECK((std::filesystem::status(file).permissions() & std::filesystem::perms::all) ==
          (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write));
  }
}

TEST_CASE("OpenFailsWhenSchemaIsNewer") {
  TempDir dir;
  std::string path = dir.file("kekd.db");
  {
    auto store = open_store(path);
    require_ok(store->create_key(make_key("alpha", "11111111-1111-4111-8111-111111111111")));
  }
  const int newer = SqliteStore::current_schema_version() + 1;
  set_user_version(path, newer);

  auto refused = SqliteStore::open(path);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().code() == Code::kFailedPrecondition);
  CHECK(refused.error().message().find("newer kekd") != std::string::npos);

  // Refusing changed nothing: back at the current version the data is all there.
  set_user_version(path, SqliteStore::current_schema_version());
  auto store = open_store(path);
  CHECK(list(*store) ==
        std::vector<KeyRecord>{make_key("alpha", "11111111-1111-4111-8111-111111111111")});
}

TEST_CASE("OpenFailsWhenDirectoryMissing") {
  TempDir dir;
  auto store = SqliteStore::open(dir.file("missing/kekd.db"));
  REQUIRE_FALSE(store.ok());
  CHECK(store.error().code() == Code::kUnavailable);
}

TEST_CASE("CreateKeyThenFindKeyReturnsAllFields") {
  TempDir dir;
  auto store = open_store(dir.file("kekd.db"));
  KeyRecord key = make_key("payments", "9c1f0e2a-b3d4-4c5e-8f7a-1b2c3d4e5f60", 3);
  key.versions[1].state = KeyState::kDisabled;
  key.versions[2].state = KeyState::kDestroyScheduled;
  key.versions[2].destroy_after = 1'800'000'000'000;
  key.versions[0].ceremony_id = "";
  require_ok(store->create_key(key));

  auto found = store->find_key("payments");
  REQUIRE(found.ok());
  REQUIRE(found->has_value());
  CHECK(**found == key);
}

TEST_CASE("FindKeyReturnsNulloptWhenUnknown") {
  Populated p;
  auto found = p.store->find_key("gamma");
  REQUIRE(found.ok());
  CHECK_FALSE(found->has_value());
}

TEST_CASE("ListKeysReturnsKeysOrderedByName") {
  TempDir dir;
  auto store = open_store(dir.file("kekd.db"));
  std::vector<KeyRecord> keys = {make_key("zeta", "id-z", 2), make_key("alpha", "id-a"),
                                 make_key("m-1", "id-m", 3)};
  for (const KeyRecord& key : keys) {
    require_ok(store->create_key(key));
  }
  std::sort(keys.begin(), keys.end(),
            [](const KeyRecord& a, const KeyRecord& b) { return a.name < b.name; });
  CHECK(list(*store) == keys);
}

TEST_CASE("ListKeysIsEmptyForNewStore") {
  TempDir dir;
  auto store = open_store(dir.file("kekd.db"));
  CHECK(list(*store).empty());
}

TEST_CASE("ReopenSeesSameData") {
  TempDir dir;
  std::string path = dir.file("kekd.db");
  std::vector<KeyRecord> written;
  {
    auto store = open_store(path);
    written = {make_key("alpha", "id-a", 2), make_key("beta", "id-b")};
    for (const KeyRecord& key : written) {
      require_ok(store->create_key(key));
    }
    require_ok(store->set_version_state("alpha", 1, KeyState::kDestroyScheduled, 42, 7));
    written[0].versions[0].state = KeyState::kDestroyScheduled;
    written[0].versions[0].destroy_after = 42;
    written[0].versions[0].updated_at = 7;
  }
  auto store = open_store(path);
  CHECK(list(*store) == written);
  auto version = store->schema_version();
  REQUIRE(version.ok());
  CHECK(*version == SqliteStore::current_schema_version());
}

TEST_CASE("CreateKeyFailsWhenNameTaken") {
  Populated p;
  Status status = p.store->create_key(make_key("alpha", "33333333-3333-4333-8333-333333333333"));
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().code() == Code::kAlreadyExists);
  CHECK(status.error().message().find("keys.name") != std::string::npos);
  p.check_unchanged();
}

TEST_CASE("CreateKeyFailsWhenIdTaken") {
  Populated p;
  Status status = p.store->create_key(make_key("gamma", "22222222-2222-4222-8222-222222222222"));
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().code() == Code::kAlreadyExists);
  CHECK(status.error().message().find("keys.id") != std::string::npos);
  p.check_unchanged();
}

TEST_CASE("CreateKeyFailsWhenVersionsEmpty") {
  Populated p;
  Status status = p.store->create_key(make_key("gamma", "id-g", 0));
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().code() == Code::kInvalidArgument);
  p.check_unchanged();
}

TEST_CASE("CreateKeyFailsWhenVersionsNotNumberedFromOne") {
  Populated p;
  KeyRecord key = make_key("gamma", "id-g", 2);
  key.versions[1].version = 3;
  Status status = p.store->create_key(key);
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().code() == Code::kInvalidArgument);

  key = make_key("gamma", "id-g");
  key.versions[0].version = 0;
  status = p.store->create_key(key);
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().code() == Code::kInvalidArgument);
  p.check_unchanged();
}

TEST_CASE("CreateKeyFailsWhenDestroyAfterDoesNotMatchState") {
  Populated p;
  KeyRecord key = make_key("gamma", "id-g");
  key.versions[0].destroy_after = 99;  // enabled
  Status status = p.store->create_key(key);
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().code() == Code::kInvalidArgument);

  key.versions[0].state = KeyState::kDestroyScheduled;
  key.versions[0].destroy_after.reset();
  status = p.store->create_key(key);
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().code() == Code::kInvalidArgument);
  p.check_unchanged();
}

TEST_CASE("AddVersionAppendsNextVersion") {
  Populated p;
  KeyVersionRecord v3 = make_version(3, KeyState::kDestroyScheduled, 5'000);
  require_ok(p.store->add_version("alpha", v3));
  KeyVersionRecord v2 = make_version(2);
  require_ok(p.store->add_version("beta", v2));

  p.expected[0].versions.push_back(v3);
  p.expected[1].versions.push_back(v2);
  CHECK(list(*p.store) == p.expected);
}

TEST_CASE("AddVersionFailsWhenNotNextVersion") {
  Populated p;
  for (std::uint32_t number : {0u, 1u, 2u, 4u}) {
    CAPTURE(number);
    Status status = p.store->add_version("alpha", make_version(number));
    REQUIRE_FALSE(status.ok());
    CHECK(status.error().code() == Code::kFailedPrecondition);
  }
  p.check_unchanged();
}

TEST_CASE("AddVersionFailsWhenKeyUnknown") {
  Populated p;
  Status status = p.store->add_version("gamma", make_version(1));
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().code() == Code::kNotFound);
  p.check_unchanged();
}

TEST_CASE("AddVersionFailsWhenDestroyAfterDoesNotMatchState") {
  Populated p;
  Status status = p.store->add_version("alpha", make_version(3, KeyState::kDisabled, 5'000));
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().code() == Code::kInvalidArgument);
  status = p.store->add_version("alpha", make_version(3, KeyState::kDestroyScheduled));
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().code() == Code::kInvalidArgument);
  p.check_unchanged();
}

TEST_CASE("SetVersionStateChangesStateAndUpdatedAt") {
  Populated p;
  require_ok(p.store->set_version_state("alpha", 1, KeyState::kDisabled, std::nullopt, 9'000));
  p.expected[0].versions[0].state = KeyState::kDisabled;
  p.expected[0].versions[0].updated_at = 9'000;
  CHECK(list(*p.store) == p.expected);

  require_ok(p.store->set_version_state("alpha", 1, KeyState::kEnabled, std::nullopt, 9'001));
  p.expected[0].versions[0].state = KeyState::kEnabled;
  p.expected[0].versions[0].updated_at = 9'001;
  CHECK(list(*p.store) == p.expected);
}

TEST_CASE("SetVersionStateSchedulesAndCancelsDestroy") {
  Populated p;
  require_ok(p.store->set_version_state("alpha", 2, KeyState::kDestroyScheduled, 77'000, 10));
  p.expected[0].versions[1].state = KeyState::kDestroyScheduled;
  p.expected[0].versions[1].destroy_after = 77'000;
  p.expected[0].versions[1].updated_at = 10;
  CHECK(list(*p.store) == p.expected);

  // Cancelling clears the deadline along with the state.
  require_ok(p.store->set_version_state("alpha", 2, KeyState::kDisabled, std::nullopt, 11));
  p.expected[0].versions[1].state = KeyState::kDisabled;
  p.expected[0].versions[1].destroy_after.reset();
  p.expected[0].versions[1].updated_at = 11;
  CHECK(list(*p.store) == p.expected);

  require_ok(p.store->set_version_state("alpha", 2, KeyState::kDestroyScheduled, 78'000, 12));
  require_ok(p.store->set_version_state("alpha", 2, KeyState::kDestroyed, std::nullopt, 13));
  p.expected[0].versions[1].state = KeyState::kDestroyed;
  p.expected[0].versions[1].updated_at = 13;
  CHECK(list(*p.store) == p.expected);
}

TEST_CASE("SetVersionStateFailsWhenKeyUnknown") {
  Populated p;
  Status status = p.store->set_version_state("gamma", 1, KeyState::kDisabled, std::nullopt, 1);
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().code() == Code::kNotFound);
  p.check_unchanged();
}

TEST_CASE("SetVersionStateFailsWhenVersionUnknown") {
  Populated p;
  Status status = p.store->set_version_state("beta", 2, KeyState::kDisabled, std::nullopt, 1);
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().code() == Code::kNotFound);
  p.check_unchanged();
}

TEST_CASE("SetVersionStateFailsWhenScheduledWithoutDestroyAfter") {
  Populated p;
  Status status =
      p.store->set_version_state("alpha", 1, KeyState::kDestroyScheduled, std::nullopt, 1);
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().code() == Code::kInvalidArgument);
  p.check_unchanged();
}

TEST_CASE("SetVersionStateFailsWhenDestroyAfterGivenForOtherState") {
  Populated p;
  for (KeyState state : {KeyState::kEnabled, KeyState::kDisabled, KeyState::kDestroyed}) {
    CAPTURE(state_name(state));
    Status status = p.store->set_version_state("alpha", 1, state, 5'000, 1);
    REQUIRE_FALSE(status.ok());
    CHECK(status.error().code() == Code::kInvalidArgument);
  }
  p.check_unchanged();
}

TEST_CASE("ConcurrentWritersFromFourThreadsLoseNothing" * doctest::test_suite("concurrency")) {
  constexpr int kThreads = 4;
  constexpr int kKeysPerThread = 50;
  TempDir dir;
  auto store = open_store(dir.file("kekd.db"));

  auto expected_key = [](int thread, int i) {
    std::string suffix = std::to_string(thread) + "-" + std::to_string(100 + i);
    KeyRecord key = make_key("k" + suffix, "id-" + suffix, 2);
    key.versions[0].state = KeyState::kDisabled;
    key.versions[0].updated_at = 5;
    return key;
  };

  std::mutex errors_mu;
  std::vector<std::string> errors;
  auto record = [&](const Error& error) {
    std::lock_guard lock(errors_mu);
    errors.push_back(error.to_string());
  };
  // doctest assertions stay on the main thread; workers only record what went wrong.
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kKeysPerThread; ++i) {
        KeyRecord key = expected_key(t, i);
        KeyRecord first = key;
        first.versions = {make_version(1)};
        if (Status s = store->create_key(first); !s.ok()) return record(s.error());
        if (Status s = store->add_version(key.name, key.versions[1]); !s.ok()) {
          return record(s.error());
        }
        if (Status s = store->set_version_state(key.name, 1, KeyState::kDisabled, std::nullopt, 5);
            !s.ok()) {
          return record(s.error());
        }
        auto found = store->find_key(key.name);
        if (!found.ok()) return record(found.error());
        if (!*found || **found != key)
          return record(Error(Code::kInternal, "mismatch " + key.name));
        if (auto all = store->list_keys(); !all.ok()) return record(all.error());
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  CHECK_MESSAGE(errors.empty(), (errors.empty() ? "" : errors.front()));

  std::vector<KeyRecord> expected;
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kKeysPerThread; ++i) {
      expected.push_back(expected_key(t, i));
    }
  }
  std::sort(expected.begin(), expected.end(),
            [](const KeyRecord& a, const KeyRecord& b) { return a.name < b.name; });
  std::vector<KeyRecord> actual = list(*store);
  CHECK(actual.size() == expected.size());
  CHECK(actual == expected);
}

}  // namespace
}  // namespace kekd::store
