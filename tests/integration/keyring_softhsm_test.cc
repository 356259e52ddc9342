// The keyring against SoftHSM through the real PKCS#11 module, a fresh token per test case.
#include <doctest/doctest.h>

#include <atomic>
#include <thread>

#include "kekd/keys/ciphertext.h"
#include "support/keyring_harness.h"
#include "support/test_mandate.h"
#include "support/token_fixture.h"

using namespace kekd;
using namespace kekd::testing;

namespace {

struct Fixture {
  TokenFixture token;
  std::unique_ptr<hsm::Pkcs11Hsm> hsm = token.open_hsm(4);
  KeyringHarness h{*hsm};
  Fixture() { h.create_key("payments"); }
};

const keys::EncryptionContext kContext{{"tenant", "acme"}, {"purpose", "card"}};

void expect_invalid_ciphertext(const Result<keys::Unwrapped>& r) {
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code() == Code::kInvalidCiphertext);
  CHECK(r.error().message() == keys::invalid_ciphertext().message());
}

}  // namespace

TEST_CASE_FIXTURE(Fixture, "WrapUnwrapRoundTripsEveryLengthWithAndWithoutContext") {
  for (std::size_t n : {1, 7, 8, 16, 20, 24, 32, 33, 64, 1000, 4096}) {
    for (const keys::EncryptionContext& context : {keys::EncryptionContext{}, kContext}) {
      Bytes plaintext = pattern_bytes(n, static_cast<std::uint8_t>(n));
      auto wrapped = h.keyring().wrap("payments", plaintext, context);
      REQUIRE_MESSAGE(wrapped.ok(), wrapped.error().to_string());
      CHECK(wrapped->version == 1);
      auto unwrapped = h.keyring().unwrap("payments", wrapped->ciphertext, context);
      REQUIRE_MESSAGE(unwrapped.ok(), "n=", n, " ", unwrapped.error().to_string());
      CHECK(as_bytes(unwrapped->plaintext) == plaintext);
    }
  }
}

TEST_CASE_FIXTURE(Fixture, "DataKeyRoundTripsWithAndWithoutPlaintext") {
  for (std::size_t n : {1, 16, 32, 1024}) {
    auto dk = h.keyring().generate_data_key("payments", n, kContext, true);
    REQUIRE_MESSAGE(dk.ok(), dk.error().to_string());
    REQUIRE(dk->plaintext);
    CHECK(dk->plaintext->size() == n);
    auto unwrapped = h.keyring().unwrap("payments", dk->ciphertext, kContext);
    REQUIRE(unwrapped.ok());
    CHECK(unwrapped->plaintext == *dk->plaintext);

    auto hidden = h.keyring().generate_data_key("payments", n, kContext, false);
    REQUIRE(hidden.ok());
    CHECK_FALSE(hidden->plaintext);
    auto opened = h.keyring().unwrap("payments", hidden->ciphertext, kContext);
    REQUIRE(opened.ok());
    CHECK(opened->plaintext.size() == n);
  }
  // Two data keys are not the same key.
  auto a = h.keyring().generate_data_key("payments", 32, {}, true);
  auto b = h.keyring().generate_data_key("payments", 32, {}, true);
  CHECK(*a->plaintext != *b->plaintext);
}

TEST_CASE_FIXTURE(Fixture, "DataKeyFailsWhenSizeOutOfRange") {
  Snapshot before = h.snapshot();
  for (std::size_t n : {0, 1025}) {
    auto dk = h.keyring().generate_data_key("payments", n, {}, true);
    REQUIRE_FALSE(dk.ok());
    CHECK(dk.error().code() == Code::kInvalidArgument);
  }
  CHECK(h.snapshot() == before);
}

TEST_CASE_FIXTURE(Fixture, "UnwrapFailsForEveryTruncation") {
  auto wrapped = h.keyring().wrap("payments", pattern_bytes(32, 9), kContext);
  REQUIRE(wrapped.ok());
  Snapshot before = h.snapshot();
  const Bytes& c = wrapped->ciphertext;
  for (std::size_t n = 0; n < c.size(); ++n) {
    CAPTURE(n);
    expect_invalid_ciphertext(h.keyring().unwrap("payments", ByteView(c.data(), n), kContext));
  }
  CHECK(h.snapshot() == before);
}

TEST_CASE_FIXTURE(Fixture, "UnwrapFailsForEverySingleBitFlip") {
  auto wrapped = h.keyring().wrap("payments", pattern_bytes(32, 9), kContext);
  REQUIRE(wrapped.ok());
  Snapshot before = h.snapshot();
  for (std::size_t bit = 0; bit < wrapped->ciphertext.size() * 8; ++bit) {
    Bytes flipped = wrapped->ciphertext;
    flipped[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    CAPTURE(bit);
    expect_invalid_ciphertext(h.keyring().unwrap("payments", flipped, kContext));
  }
  CHECK(h.snapshot() == before);
}

TEST_CASE_FIXTURE(Fixture, "UnwrapFailsWithSameErrorForWrongContext") {
  auto wrapped = h.keyring().wrap("payments", pattern_bytes(32, 9), kContext);
  REQUIRE(wrapped.ok());
  expect_invalid_ciphertext(h.keyring().unwrap("payments", wrapped->ciphertext, {}));
  expect_invalid_ciphertext(
      h.keyring().unwrap("payments", wrapped->ciphertext, {{"tenant", "acme"}}));
  expect_invalid_ciphertext(h.keyring().unwrap("payments", wrapped->ciphertext,
                                               {{"tenant", "acme"}, {"purpose", "card "}}));
  auto rewrapped = h.keyring().rewrap("payments", wrapped->ciphertext, {});
  REQUIRE_FALSE(rewrapped.ok());
  CHECK(rewrapped.error().code() == Code::kInvalidCiphertext);
}

TEST_CASE_FIXTURE(Fixture, "UnwrapFailsWhenHeaderNamesUnknownFormatKeyOrVersion") {
  h.create_key("other");
  auto wrapped = h.keyring().wrap("payments", pattern_bytes(32, 9), {});
  REQUIRE(wrapped.ok());
  auto parsed = keys::parse_ciphertext(wrapped->ciphertext);
  REQUIRE(parsed.ok());
  Snapshot before = h.snapshot();

  Bytes format2 = wrapped->ciphertext;
  format2[0] = 0x02;
  expect_invalid_ciphertext(h.keyring().unwrap("payments", format2, {}));

  Bytes past_end = wrapped->ciphertext;
  past_end[1] = 64;
  past_end.resize(2 + 40);
  expect_invalid_ciphertext(h.keyring().unwrap("payments", past_end, {}));

  keys::Ciphertext unknown_version = *parsed;
  unknown_version.version = 2;
  expect_invalid_ciphertext(
      h.keyring().unwrap("payments", keys::encode_ciphertext(unknown_version), {}));

  // A ciphertext of "payments" presented as one of "other", and relabelled as one of "other".
  expect_invalid_ciphertext(h.keyring().unwrap("other", wrapped->ciphertext, {}));
  keys::Ciphertext relabelled = *parsed;
  relabelled.key_name = "other";
  expect_invalid_ciphertext(h.keyring().unwrap("other", keys::encode_ciphertext(relabelled), {}));

  auto unknown_key = h.keyring().unwrap("nope", wrapped->ciphertext, {});
  REQUIRE_FALSE(unknown_key.ok());
  CHECK(unknown_key.error().code() == Code::kNotFound);
  CHECK(h.snapshot() == before);
}

TEST_CASE_FIXTURE(Fixture, "UnwrapFailsForDisabledVersion") {
  auto wrapped = h.keyring().wrap("payments", pattern_bytes(32, 9), {});
  REQUIRE(wrapped.ok());
  REQUIRE(h.keyring().apply(MandateForTests::disable("payments", 1)).ok());
  Snapshot before = h.snapshot();
  auto r = h.keyring().unwrap("payments", wrapped->ciphertext, {});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code() == Code::kFailedPrecondition);
  CHECK(h.snapshot() == before);
}

TEST_CASE_FIXTURE(Fixture, "WrapFailsWhenPlaintextSizeOutOfRangeOrKeyUnknown") {
  Snapshot before = h.snapshot();
  CHECK(h.keyring().wrap("payments", Bytes(), {}).error().code() == Code::kInvalidArgument);
  CHECK(h.keyring().wrap("payments", Bytes(4097, 1), {}).error().code() == Code::kInvalidArgument);
  CHECK(h.keyring().wrap("nope", Bytes(32, 1), {}).error().code() == Code::kNotFound);
  CHECK(h.snapshot() == before);
}

TEST_CASE_FIXTURE(Fixture, "RotationKeepsOldCiphertextsAndRewrapMovesThemForward") {
  Bytes dek = pattern_bytes(32, 3);
  auto v1 = h.keyring().wrap("payments", dek, kContext);
  REQUIRE(v1.ok());
  CHECK(v1->version == 1);

  h.rotate_key("payments");
  CHECK(hsm->find_keks("kekd:payments:")->size() == 2);

  auto old = h.keyring().unwrap("payments", v1->ciphertext, kContext);
  REQUIRE(old.ok());
  CHECK(as_bytes(old->plaintext) == dek);
  CHECK(old->version == 1);

  auto v2 = h.keyring().wrap("payments", dek, kContext);
  REQUIRE(v2.ok());
  CHECK(v2->version == 2);

  auto moved = h.keyring().rewrap("payments", v1->ciphertext, kContext);
  REQUIRE(moved.ok());
  CHECK(moved->version == 2);
  CHECK(keys::parse_ciphertext(moved->ciphertext)->version == 2);
  auto reopened = h.keyring().unwrap("payments", moved->ciphertext, kContext);
  REQUIRE(reopened.ok());
  CHECK(as_bytes(reopened->plaintext) == dek);
  CHECK(reopened->version == 2);
}

TEST_CASE_FIXTURE(Fixture,
                  "FourThreadsOfMixedOperationsAllVerify" * doctest::test_suite("concurrency")) {
  constexpr int kThreads = 4;
  constexpr int kOpsPerThread = 2000;
  std::atomic<int> failures{0};
  std::atomic<int> verified{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      keys::EncryptionContext context{{"thread", std::to_string(t)}};
      Bytes held;  // a ciphertext from an earlier iteration, to unwrap and rewrap later
      Bytes held_plain;
      for (int i = 0; i < kOpsPerThread; ++i) {
        bool ok = false;
        switch (i % 4) {
          case 0: {
            held_plain = pattern_bytes(1 + (i * 7 + t) % 300, static_cast<std::uint8_t>(i));
            auto w = h.keyring().wrap("payments", held_plain, context);
            ok = w.ok();
            if (ok) held = w->ciphertext;
            break;
          }
          case 1: {
            auto u = h.keyring().unwrap("payments", held, context);
            ok = u.ok() && as_bytes(u->plaintext) == held_plain;
            break;
          }
          case 2: {
            auto d = h.keyring().generate_data_key("payments", 32, context, true);
            if (d.ok()) {
              auto u = h.keyring().unwrap("payments", d->ciphertext, context);
              ok = u.ok() && u->plaintext == *d->plaintext;
            }
            break;
          }
          case 3: {
            auto r = h.keyring().rewrap("payments", held, context);
            if (r.ok()) {
              auto u = h.keyring().unwrap("payments", r->ciphertext, context);
              ok = u.ok() && as_bytes(u->plaintext) == held_plain;
            }
            break;
          }
        }
        (ok ? verified : failures)++;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(failures == 0);
  CHECK(verified == kThreads * kOpsPerThread);
}

TEST_CASE_FIXTURE(Fixture, "KeysAndCiphertextsSurviveReopeningStoreAndModule") {
  Bytes dek = pattern_bytes(48, 5);
  auto wrapped = h.keyring().wrap("payments", dek, kContext);
  REQUIRE(wrapped.ok());
  const std::string path = h.store_path();
  auto record = h.keyring().describe("payments")->record;

  // A second store connection and keyring over the same file and token (as after a restart).
  auto store = store::SqliteStore::open(path);
  REQUIRE(store.ok());
  auto keyring = keys::Keyring::open(*hsm, **store);
  REQUIRE(keyring.ok());
  auto info = (*keyring)->describe("payments");
  REQUIRE(info.ok());
  CHECK(info->record == record);
  auto unwrapped = (*keyring)->unwrap("payments", wrapped->ciphertext, kContext);
  REQUIRE(unwrapped.ok());
  CHECK(as_bytes(unwrapped->plaintext) == dek);
}
