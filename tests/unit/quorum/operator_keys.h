// Operator key pairs for tests, generated with Botan, so that tests sign statements exactly as
// operators do with openssl: Ed25519 over the raw bytes, ECDSA P-256 DER over SHA-256.
// Also fixed public keys (made with openssl) for byte-exact expectations.
#pragma once

#include <botan/ec_group.h>
#include <botan/ecdsa.h>
#include <botan/ed25519.h>
#include <botan/pubkey.h>
#include <botan/system_rng.h>
#include <botan/x509_key.h>
#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <string_view>

#include "kekd/quorum/operator.h"

namespace kekd::testing {

class OperatorKey {
 public:
  static OperatorKey ed25519(std::string name) {
    return OperatorKey(std::move(name),
                       std::make_shared<Botan::Ed25519_PrivateKey>(Botan::system_rng()));
  }
  static OperatorKey ecdsa(std::string name) {
    return OperatorKey(std::move(name), std::make_shared<Botan::ECDSA_PrivateKey>(
                                            Botan::system_rng(), Botan::EC_Group("secp256r1")));
  }

  const quorum::Operator& op() const { return op_; }
  const std::string& name() const { return op_.name; }
  std::string public_pem() const { return Botan::X509::PEM_encode(*key_); }

  // A signature as `openssl pkeyutl -sign -rawin` (Ed25519) or `openssl dgst -sha256 -sign`
  // (ECDSA) makes it.
  Bytes sign(std::string_view message) const {
    const bool ed = key_->algo_name() == "Ed25519";
    Botan::PK_Signer signer(*key_, Botan::system_rng(), ed ? "Pure" : "EMSA1(SHA-256)",
                            ed ? Botan::IEEE_1363 : Botan::DER_SEQUENCE);
    return signer.sign_message(reinterpret_cast<const std::uint8_t*>(message.data()),
                               message.size(), Botan::system_rng());
  }

 private:
  OperatorKey(std::string name, std::shared_ptr<Botan::Private_Key> key) : key_(std::move(key)) {
    auto parsed = quorum::parse_operator(std::move(name), Botan::X509::PEM_encode(*key_));
    REQUIRE_MESSAGE(parsed.ok(), parsed.error().to_string());
    op_ = std::move(*parsed);
  }

  std::shared_ptr<Botan::Private_Key> key_;
  quorum::Operator op_;
};

// Public keys made with `openssl genpkey` and `openssl pkey -pubout -outform DER | base64`.
inline constexpr std::string_view kEd25519SpkiA =
    "MCowBQYDK2VwAyEAs1/oR1H6p+nqQJ4JUVn308KXa6L2nBSFEH2wge8Ojjg=";
inline constexpr std::string_view kEd25519SpkiB =
    "MCowBQYDK2VwAyEAP+1NUrs/9StTEo1nFAb5wah/ntI+bcy7Q/R9HDUmMv4=";
inline constexpr std::string_view kEd25519SpkiC =
    "MCowBQYDK2VwAyEANwsBIG7x5cSTqzXwj3/gY5+vNoT3WB5J/IsOqiGjGfM=";
inline constexpr std::string_view kP256SpkiA =
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE8FyGtqQj9fdLur8fTvkiBnFtJaFpaxt+NL7P6DzjRUgusXB1BRxMVsh"
    "raooI5EfWyYT9Wo9hstE5n2cDm7nXLQ==";
// The same P-256 key as kP256SpkiA, as `openssl pkey -pubout` writes its PEM.
inline constexpr std::string_view kP256PemA =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE8FyGtqQj9fdLur8fTvkiBnFtJaFp\n"
    "axt+NL7P6DzjRUgusXB1BRxMVshraooI5EfWyYT9Wo9hstE5n2cDm7nXLQ==\n"
    "-----END PUBLIC KEY-----\n";

}  // namespace kekd::testing
