// Operators (crypto officers) and the verification of their approvals (docs/ceremony-formats.md).
//
// Security model:
// - An operator is a name and a public key; kekd never sees an operator's private key. Operators
//   sign ceremony statements offline (openssl, a smartcard), and kekd accepts an approval only if
//   the signature verifies under the key registered for that name.
// - Only two algorithms, each with one fixed encoding: Ed25519 (raw 64-byte signature over the
//   statement bytes) and ECDSA P-256 (DER signature over SHA-256 of the statement bytes). No
//   other curve, hash or encoding is accepted, so there is nothing to negotiate or downgrade.
// - Public keys are kept as their DER SubjectPublicKeyInfo and must already be in the one
//   canonical encoding (a named curve, an uncompressed point): the fingerprint a person computes
//   with openssl from their PEM is then exactly the one kekd shows and hashes into the set.
// - Everything here takes untrusted input: no exception escapes, every failure is an Error.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "kekd/common/bytes.h"
#include "kekd/common/error.h"

namespace kekd::quorum {

enum class Algorithm { kEd25519, kEcdsaP256 };

// "ed25519", "ecdsa-p256": the names in the canonical operator set and in statements.
std::string_view algorithm_name(Algorithm algorithm);
std::optional<Algorithm> parse_algorithm(std::string_view name);

inline constexpr std::size_t kMaxOperatorNameLength = 64;

// An operator name is [a-z0-9][a-z0-9_.-]{0,63}: one token on a statement line.
Status validate_operator_name(std::string_view name);

struct Operator {
  std::string name;
  Algorithm algorithm = Algorithm::kEd25519;
  Bytes spki_der;  // DER SubjectPublicKeyInfo, canonical (see above)

  // The public key as PEM ("-----BEGIN PUBLIC KEY-----", 64-column base64, final LF).
  std::string pem() const;
  // "sha256:<lowercase hex of SHA-256 of spki_der>", as `openssl pkey -pubin -outform DER |
  // sha256sum` prints it.
  std::string fingerprint() const;

  bool operator==(const Operator&) const = default;
};

// Any public key's fingerprint ("sha256:<hex of SHA-256 of the DER SPKI>") and PEM form: what
// operators compare, and what kekd publishes for its own audit key.
std::string spki_fingerprint(ByteView spki_der);
std::string spki_pem(ByteView spki_der);

// An operator from a name and a PEM SubjectPublicKeyInfo. kInvalidArgument for a bad name, a
// document that is not exactly one PEM public key, or a key that is not Ed25519 or ECDSA P-256.
Result<Operator> parse_operator(std::string name, std::string_view pem);

// The same from the DER SubjectPublicKeyInfo (as carried, base64, in canonical texts).
Result<Operator> operator_from_der(std::string name, ByteView spki_der);

// Verifies an approval signature over message under the operator's key. kSignatureRejected for
// a signature that does not verify, including a malformed one (wrong length, bad DER).
Status verify_signature(const Operator& op, ByteView message, ByteView signature);

}  // namespace kekd::quorum
