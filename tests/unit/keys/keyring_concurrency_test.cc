// The keyring's metadata cache under concurrent use: DEK operations, describe and list on several
// threads while another thread rotates one key and disables and re-enables another. Run under
// ThreadSanitizer by scripts/sanitizers.sh (test suite "concurrency").
#include <doctest/doctest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "support/keyring_harness.h"
#include "support/memory_hsm.h"
#include "support/test_mandate.h"

using namespace kekd;
using namespace kekd::testing;

TEST_CASE("KeyringServesEveryThreadWhileLifecycleChangesRun" * doctest::test_suite("concurrency")) {
  MemoryHsm hsm;
  KeyringHarness h(hsm);
  h.create_key("payments");
  h.create_key("orders");

  constexpr int kReaders = 4;
  constexpr int kRotations = 20;
  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::atomic<int> orders_refused{0};
  std::atomic<int> operations{0};

  // The lifecycle thread: every change goes through apply(), as an executed ceremony's does.
  std::thread lifecycle([&] {
    for (int i = 0; i < kRotations; ++i) {
      if (!h.keyring().apply(MandateForTests::rotate_key("payments")).ok()) failures++;
      if (!h.keyring().apply(MandateForTests::disable("orders", 1)).ok()) failures++;
      if (!h.keyring().apply(MandateForTests::enable("orders", 1)).ok()) failures++;
    }
    done = true;
  });

  std::vector<std::thread> readers;
  for (int t = 0; t < kReaders; ++t) {
    readers.emplace_back([&, t] {
      const keys::EncryptionContext context{{"reader", std::to_string(t)}};
      std::uint32_t last_version = 0;  // the primary version may only move forward
      // At least a few rounds after the last change, so every reader sees the final state.
      for (int i = 0; !done || i < 50; ++i) {
        Bytes plain = pattern_bytes(1 + (i % 64), static_cast<std::uint8_t>(t * 50 + i));
        auto wrapped = h.keyring().wrap("payments", plain, context);
        if (!wrapped.ok() || wrapped->version < last_version) {
          failures++;
          continue;
        }
        last_version = wrapped->version;
        auto opened = h.keyring().unwrap("payments", wrapped->ciphertext, context);
        if (!opened.ok() || as_bytes(opened->plaintext) != plain) failures++;
        auto moved = h.keyring().rewrap("payments", wrapped->ciphertext, context);
        if (!moved.ok() || moved->version < last_version) failures++;

        auto described = h.keyring().describe("payments");
        if (!described.ok() || described->primary_version < last_version ||
            described->record.versions.size() != described->primary_version) {
          failures++;
        }
        if (h.keyring().list().size() != 2) failures++;

        // "orders" has one version that is switched off and on: a data key is either made with
        // it or refused as kFailedPrecondition, never anything else.
        auto data_key = h.keyring().generate_data_key("orders", 32, context, true);
        if (data_key.ok()) {
          if (data_key->version != 1) failures++;
        } else if (data_key.error().code() == Code::kFailedPrecondition) {
          orders_refused++;
        } else {
          failures++;
        }
        operations++;
      }
    });
  }
  lifecycle.join();
  for (std::thread& t : readers) t.join();

  CHECK(failures == 0);
  CHECK(operations >= kReaders * 50);
  auto payments = h.keyring().describe("payments");
  REQUIRE(payments.ok());
  CHECK(payments->primary_version == kRotations + 1);
  auto orders = h.keyring().describe("orders");
  REQUIRE(orders.ok());
  CHECK(orders->primary_version == 1);
  MESSAGE("data keys of 'orders' refused while disabled: ", orders_refused.load());
}
