#include "kekd/quorum/operator.h"

#include <botan/alg_id.h>
#include <botan/ber_dec.h>
#include <botan/ec_group.h>
#include <botan/ecc_key.h>
#include <botan/hash.h>
#include <botan/pem.h>
#include <botan/pk_keys.h>
#include <botan/pubkey.h>
#include <botan/system_rng.h>
#include <botan/x509_key.h>

#include <exception>
#include <memory>

namespace kekd::quorum {
namespace {

// Far above any Ed25519 (44 bytes) or P-256 (91 bytes) SubjectPublicKeyInfo and its PEM; only a
// bound on what is handed to the ASN.1 decoder.
constexpr std::size_t kMaxSpkiBytes = 1024;
constexpr std::size_t kMaxPemChars = 4096;
// A DER ECDSA P-256 signature is at most 72 bytes.
constexpr std::size_t kMaxSignatureBytes = 256;
constexpr std::size_t kEd25519SignatureBytes = 64;

constexpr std::string_view kPemBegin = "-----BEGIN PUBLIC KEY-----";
constexpr std::string_view kPemEnd = "-----END PUBLIC KEY-----";

bool is_operator_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

std::string_view trim_whitespace(std::string_view s) {
  constexpr std::string_view kWhitespace = " \t\r\n";
  std::size_t begin = s.find_first_not_of(kWhitespace);
  if (begin == std::string_view::npos) {
    return {};
  }
  std::size_t end = s.find_last_not_of(kWhitespace);
  return s.substr(begin, end - begin + 1);
}

Error invalid_key(std::string_view name, std::string_view why) {
  return Error(Code::kInvalidArgument,
               "public key of operator '" + std::string(name) + "': " + std::string(why));
}

Error rejected(const Operator& op) {
  return Error(Code::kSignatureRejected, "the signature of operator '" + op.name +
                                             "' does not verify over this ceremony's statement");
}

// Botan's name of the one curve kekd accepts for ECDSA.
bool is_p256(const Botan::Public_Key& key) {
  const auto* ec = dynamic_cast<const Botan::EC_PublicKey*>(&key);
  return ec != nullptr && ec->domain().get_curve_oid() == Botan::OID::from_string("secp256r1");
}

// The algorithm named by a SubjectPublicKeyInfo, without decoding the key itself.
std::optional<std::string> spki_algorithm(const Bytes& der) {
  try {
    Botan::AlgorithmIdentifier algorithm;
    Botan::BER_Decoder(der).start_cons(Botan::SEQUENCE).decode(algorithm);
    return algorithm.get_oid().to_formatted_string();
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace

std::string_view algorithm_name(Algorithm algorithm) {
  switch (algorithm) {
    case Algorithm::kEd25519:
      return "ed25519";
    case Algorithm::kEcdsaP256:
      return "ecdsa-p256";
  }
  return "invalid";
}

std::optional<Algorithm> parse_algorithm(std::string_view name) {
  for (Algorithm a : {Algorithm::kEd25519, Algorithm::kEcdsaP256}) {
    if (algorithm_name(a) == name) {
      return a;
    }
  }
  return std::nullopt;
}

Status validate_operator_name(std::string_view name) {
  bool valid = !name.empty() && name.size() <= kMaxOperatorNameLength && name[0] != '_' &&
               name[0] != '.' && name[0] != '-';
  for (std::size_t i = 0; valid && i < name.size(); ++i) {
    valid = is_operator_name_char(name[i]);
  }
  if (!valid) {
    return Error(Code::kInvalidArgument,
                 "an operator name is 1 to 64 characters from a-z, 0-9, '_', '.' and '-', "
                 "starting with a letter or digit");
  }
  return ok_status();
}

std::string spki_fingerprint(ByteView spki_der) {
  auto sha256 = Botan::HashFunction::create_or_throw("SHA-256");
  sha256->update(spki_der.data(), spki_der.size());
  return "sha256:" + to_hex(sha256->final_stdvec());
}

std::string spki_pem(ByteView spki_der) {
  return Botan::PEM_Code::encode(spki_der.data(), spki_der.size(), "PUBLIC KEY");
}

std::string Operator::pem() const { return spki_pem(spki_der); }

std::string Operator::fingerprint() const { return spki_fingerprint(spki_der); }

Result<Operator> parse_operator(std::string name, std::string_view pem) {
  KEKD_RETURN_IF_ERROR(validate_operator_name(name));
  if (pem.size() > kMaxPemChars) {
    return invalid_key(name, "the PEM document is too long");
  }
  // Exactly one PEM block, labelled PUBLIC KEY, and nothing around it but whitespace: a file
  // with a certificate, a private key or two keys in it is a mistake to report, not to guess at.
  std::string_view block = trim_whitespace(pem);
  if (!block.starts_with(kPemBegin) || !block.ends_with(kPemEnd) ||
      block.find("-----BEGIN", 1) != std::string_view::npos) {
    return invalid_key(name,
                       "expected exactly one PEM block \"-----BEGIN PUBLIC KEY-----\" "
                       "(a SubjectPublicKeyInfo, as `openssl pkey -pubout` writes)");
  }
  Botan::secure_vector<std::uint8_t> der;
  try {
    der = Botan::PEM_Code::decode_check_label(std::string(block), "PUBLIC KEY");
  } catch (const std::exception&) {
    return invalid_key(name, "the PEM block is not valid base64");
  }
  return operator_from_der(std::move(name), Bytes(der.begin(), der.end()));
}

Result<Operator> operator_from_der(std::string name, ByteView spki_der) {
  KEKD_RETURN_IF_ERROR(validate_operator_name(name));
  if (spki_der.empty() || spki_der.size() > kMaxSpkiBytes) {
    return invalid_key(name, "not a SubjectPublicKeyInfo of a plausible size");
  }
  Operator op{std::move(name), Algorithm::kEd25519, Bytes(spki_der.begin(), spki_der.end())};
  std::unique_ptr<Botan::Public_Key> key;
  try {
    key.reset(Botan::X509::load_key(op.spki_der));
  } catch (const std::exception&) {
    key.reset();
  }
  if (key == nullptr) {
    // Botan knows no key type for some algorithms (Ed448, say): name it if the outer structure
    // at least parses, so that the operator learns what to use instead.
    std::optional<std::string> algorithm = spki_algorithm(op.spki_der);
    if (algorithm && *algorithm != "Ed25519" && *algorithm != "ECDSA") {
      return invalid_key(op.name, *algorithm + " is not accepted; use Ed25519 or ECDSA P-256");
    }
    return invalid_key(op.name, "not a valid DER SubjectPublicKeyInfo");
  }
  const std::string algo = key->algo_name();
  if (algo == "Ed25519") {
    op.algorithm = Algorithm::kEd25519;
  } else if (algo == "ECDSA" && is_p256(*key)) {
    op.algorithm = Algorithm::kEcdsaP256;
  } else {
    std::string what = algo == "ECDSA" ? "ECDSA on a curve other than P-256" : algo;
    return invalid_key(op.name, what + " is not accepted; use Ed25519 or ECDSA P-256");
  }
  try {
    if (!key->check_key(Botan::system_rng(), /*strong=*/false)) {
      return invalid_key(op.name, "the key fails its validity check");
    }
    // Re-encoding must give the same bytes: a key in an unusual encoding (explicit curve
    // parameters, a compressed point, non-minimal DER) would otherwise have two fingerprints.
    if (Botan::X509::BER_encode(*key) != op.spki_der) {
      return invalid_key(op.name,
                         "not in canonical form; re-export it with `openssl pkey -pubin -pubout` "
                         "(named curve, uncompressed point)");
    }
  } catch (const std::exception&) {
    return invalid_key(op.name, "the key fails its validity check");
  }
  return op;
}

Status verify_signature(const Operator& op, ByteView message, ByteView signature) {
  if (signature.empty() || signature.size() > kMaxSignatureBytes) {
    return rejected(op);
  }
  // Botan reports malformed keys and signatures by throwing; none of that crosses this line.
  try {
    std::unique_ptr<Botan::Public_Key> key(Botan::X509::load_key(op.spki_der));
    if (key == nullptr) {
      return rejected(op);
    }
    bool valid = false;
    switch (op.algorithm) {
      case Algorithm::kEd25519: {
        if (key->algo_name() != "Ed25519" || signature.size() != kEd25519SignatureBytes) {
          return rejected(op);
        }
        Botan::PK_Verifier verifier(*key, "Pure");
        valid = verifier.verify_message(message.data(), message.size(), signature.data(),
                                        signature.size());
        break;
      }
      case Algorithm::kEcdsaP256: {
        if (key->algo_name() != "ECDSA" || !is_p256(*key)) {
          return rejected(op);
        }
        // DER_SEQUENCE makes Botan insist on the canonical DER encoding of (r, s), so one
        // signature has exactly one accepted byte string.
        Botan::PK_Verifier verifier(*key, "EMSA1(SHA-256)", Botan::DER_SEQUENCE);
        valid = verifier.verify_message(message.data(), message.size(), signature.data(),
                                        signature.size());
        break;
      }
    }
    return valid ? ok_status() : Status(rejected(op));
  } catch (const std::exception&) {
    return rejected(op);
  }
}

}  // namespace kekd::quorum
