// SqliteStore as a ClientStore: records round-trip, ids are never reused, deleted clients are
// invisible, and out-of-bounds records are refused.
#include <doctest/doctest.h>

#include "kekd/store/sqlite_store.h"
#include "support/temp_dir.h"

namespace kekd::store {
namespace {

using kekd::testing::TempDir;

ClientRecord make_client(const std::string& id, UnixMillis created_at = 1'795'000'000'000) {
  return {id,         Bytes(40, 0xab), false, R"([{"key":"payments","ops":["wrap"]}])",
          created_at, std::nullopt};
}

struct Fixture {
  TempDir dir;
  std::unique_ptr<SqliteStore> store;
  Fixture() {
    auto opened = SqliteStore::open(dir.file("kekd.db"));
    REQUIRE_MESSAGE(opened.ok(), opened.error().to_string());
    store = std::move(*opened);
  }
};

void expect_code(const Status& status, Code code) {
  REQUIRE_FALSE(status.ok());
  CHECK_MESSAGE(status.error().code() == code, status.error().to_string());
}

}  // namespace

TEST_CASE_FIXTURE(Fixture, "CreateClientThenFindReturnsAllFields") {
  ClientRecord admin = make_client("adm1n_X-9");
  admin.admin = true;
  REQUIRE(store->create_client(admin).ok());
  auto found = store->find_client("adm1n_X-9");
  REQUIRE(found.ok());
  REQUIRE(found->has_value());
  CHECK(**found == admin);
  CHECK_FALSE(store->find_client("other")->has_value());
}

TEST_CASE_FIXTURE(Fixture, "ListClientsReturnsLiveClientsOldestFirst") {
  REQUIRE(store->create_client(make_client("b", 2)).ok());
  REQUIRE(store->create_client(make_client("a", 3)).ok());
  REQUIRE(store->create_client(make_client("c", 1)).ok());
  REQUIRE(store->delete_client("a", 4).ok());
  auto listed = store->list_clients();
  REQUIRE(listed.ok());
  REQUIRE(listed->size() == 2);
  CHECK((*listed)[0].id == "c");
  CHECK((*listed)[1].id == "b");
}

TEST_CASE_FIXTURE(Fixture, "DeleteClientHidesItFromFind") {
  REQUIRE(store->create_client(make_client("app")).ok());
  REQUIRE(store->delete_client("app", 5).ok());
  CHECK_FALSE(store->find_client("app")->has_value());
}

TEST_CASE_FIXTURE(Fixture, "DeleteClientFailsForUnknownOrDeletedClient") {
  expect_code(store->delete_client("ghost", 5), Code::kNotFound);
  REQUIRE(store->create_client(make_client("app")).ok());
  REQUIRE(store->delete_client("app", 5).ok());
  expect_code(store->delete_client("app", 6), Code::kNotFound);
}

TEST_CASE_FIXTURE(Fixture, "CreateClientFailsWhenIdWasEverUsed") {
  REQUIRE(store->create_client(make_client("app")).ok());
  expect_code(store->create_client(make_client("app")), Code::kAlreadyExists);
  REQUIRE(store->delete_client("app", 5).ok());
  expect_code(store->create_client(make_client("app")), Code::kAlreadyExists);
}

TEST_CASE_FIXTURE(Fixture, "CreateClientFailsForOutOfBoundsRecord") {
  auto bad = [&](auto mutate) {
    ClientRecord c = make_client("app");
    mutate(c);
    expect_code(store->create_client(c), Code::kInvalidArgument);
  };
  bad([](ClientRecord& c) { c.id = ""; });
  bad([](ClientRecord& c) { c.id = "app.secret"; });  // '.' separates id and secret in tokens
  bad([](ClientRecord& c) { c.id = "a b"; });
  bad([](ClientRecord& c) { c.id = std::string(65, 'a'); });
  bad([](ClientRecord& c) { c.wrapped_secret.clear(); });
  bad([](ClientRecord& c) { c.wrapped_secret = Bytes(1025, 1); });
  bad([](ClientRecord& c) { c.grants_json.clear(); });
  bad([](ClientRecord& c) { c.grants_json = std::string(64 * 1024 + 1, ' '); });
  bad([](ClientRecord& c) { c.deleted_at = 1; });
  CHECK(store->list_clients()->empty());
}

}  // namespace kekd::store
