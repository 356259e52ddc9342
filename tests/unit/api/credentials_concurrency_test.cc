// The credentials cache under concurrent use: bearer checks and SigV4 signing keys for several
// clients on several threads while one client is deleted. Run under ThreadSanitizer by
// scripts/sanitizers.sh (test suite "concurrency").
#include <doctest/doctest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "kekd/api/credentials.h"
#include "support/keyring_harness.h"
#include "support/memory_hsm.h"

using namespace kekd;
using namespace kekd::testing;
using api::Credentials;

TEST_CASE("CredentialsCacheServesManyThreadsAndForgetsADeletedClientForAll" *
          doctest::test_suite("concurrency")) {
  MemoryHsm hsm;
  KeyringHarness h(hsm);  // for its SQLite store, a ClientStore
  REQUIRE(Credentials::create_token_key(hsm).ok());
  Credentials credentials(hsm, h.store());

  constexpr int kClients = 4;  // the last one is deleted while the others are in use
  std::vector<std::string> ids;
  std::vector<std::string> headers;
  for (int i = 0; i < kClients; ++i) {
    auto created =
        credentials.create(false, R"([{"key":"payments","operations":["wrap"]}])", h.now);
    REQUIRE_MESSAGE(created.ok(), created.error().to_string());
    ids.push_back(created->client_id);
    headers.push_back("Bearer " + created->token());
  }
  const std::string& victim = ids.back();

  constexpr int kThreads = 6;
  constexpr int kRounds = 200;
  std::atomic<bool> deleted{false};
  std::atomic<int> failures{0};
  std::atomic<int> victim_refused{0};
  std::atomic<int> started{0};

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      started++;
      // kRounds, and at least one round per client after the deletion was seen.
      int rounds_after_deletion = 0;
      for (int i = 0; i < kRounds || rounds_after_deletion < kClients; ++i) {
        // Read before the calls: a deletion that had returned by then must be seen by them.
        const bool was_deleted = deleted;
        if (was_deleted) rounds_after_deletion++;
        const int c = (t + i) % kClients;
        const bool gone = c == kClients - 1 && was_deleted;
        auto principal = credentials.authenticate(headers[c]);
        // Two dates, as around midnight UTC: both scopes are cached side by side.
        auto signing = credentials.signing_identity(ids[c], i % 2 ? "20261123" : "20261124",
                                                    "us-east-1", "kms");
        if (gone) {
          if (principal.ok() || signing.ok()) failures++;
          if (!principal.ok() && principal.error().code() == Code::kUnauthenticated) {
            victim_refused++;
          }
        } else if (c != kClients - 1) {
          if (!principal.ok() || principal->client_id != ids[c] || principal->grants.size() != 1 ||
              !signing.ok() || signing->principal.client_id != ids[c] ||
              signing->signing_key.size() != 32) {
            failures++;
          }
        }
        // A wrong secret for a cached client is refused, whatever the cache holds.
        if (credentials.authenticate(headers[c] + "x").ok()) failures++;
      }
    });
  }
  // Delete once every thread is running, so that the deletion races with the cache fills.
  while (started < kThreads) std::this_thread::yield();
  REQUIRE(credentials.remove(victim, h.now + 1).ok());
  deleted = true;
  for (std::thread& t : threads) t.join();

  CHECK(failures == 0);
  CHECK(victim_refused > 0);
  CHECK(credentials.authenticate(headers.back()).error().code() == Code::kUnauthenticated);
  CHECK(credentials.signing_identity(victim, "20261123", "us-east-1", "kms").error().code() ==
        Code::kUnauthenticated);
  for (int c = 0; c + 1 < kClients; ++c) CHECK(credentials.authenticate(headers[c]).ok());
}
