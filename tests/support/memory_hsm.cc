#include "support/memory_hsm.h"

#include <botan/block_cipher.h>
#include <botan/data_src.h>
#include <botan/ecdsa.h>
#include <botan/nist_keywrap.h>
#include <botan/pkcs8.h>
#include <botan/pubkey.h>
#include <botan/system_rng.h>
#include <botan/x509_key.h>

namespace kekd::testing {
namespace {

std::unique_ptr<Botan::BlockCipher> aes256(const SecretBytes& key) {
  auto cipher = Botan::BlockCipher::create_or_throw("AES-256");
  cipher->set_key(key);
  return cipher;
}

Error missing(std::string_view label) {
  return Error(Code::kNotFound, "no key labelled " + std::string(label));
}

}  // namespace

void MemoryHsm::fail_with(std::optional<Error> error) {
  std::lock_guard lock(mu_);
  failure_ = std::move(error);
}

Status MemoryHsm::generate_kek(std::string_view label) {
  std::lock_guard lock(mu_);
  if (failure_) return *failure_;
  if (keks_.contains(label)) {
    return Error(Code::kAlreadyExists, "exists: " + std::string(label));
  }
  keks_.emplace(std::string(label), Botan::system_rng().random_vec(32));
  return ok_status();
}

Result<std::vector<std::string>> MemoryHsm::find_keks(std::string_view prefix) {
  std::lock_guard lock(mu_);
  if (failure_) return *failure_;
  std::vector<std::string> out;
  for (const auto& [label, key] : keks_) {
    if (label.starts_with(prefix)) out.push_back(label);
  }
  return out;
}

Status MemoryHsm::destroy_kek(std::string_view label) {
  std::lock_guard lock(mu_);
  if (failure_) return *failure_;
  auto it = keks_.find(label);
  if (it == keks_.end()) return missing(label);
  keks_.erase(it);
  return ok_status();
}

Result<Bytes> MemoryHsm::wrap(std::string_view label, ByteView payload) {
  std::lock_guard lock(mu_);
  if (failure_) return *failure_;
  auto it = keks_.find(label);
  if (it == keks_.end()) return missing(label);
  return Botan::nist_key_wrap_padded(payload.data(), payload.size(), *aes256(it->second));
}

Result<SecretBytes> MemoryHsm::unwrap(std::string_view label, ByteView wrapped) {
  std::lock_guard lock(mu_);
  if (failure_) return *failure_;
  auto it = keks_.find(label);
  if (it == keks_.end()) return missing(label);
  try {
    return Botan::nist_key_unwrap_padded(wrapped.data(), wrapped.size(), *aes256(it->second));
  } catch (const std::exception&) {
    return Error(Code::kInvalidCiphertext, "integrity check failed");
  }
}

Result<SecretBytes> MemoryHsm::random(std::size_t n) {
  std::lock_guard lock(mu_);
  if (failure_) return *failure_;
  return Botan::system_rng().random_vec(n);
}

Status MemoryHsm::generate_signing_key(std::string_view label) {
  std::lock_guard lock(mu_);
  if (failure_) return *failure_;
  if (signing_keys_.contains(label)) {
    return Error(Code::kAlreadyExists, "exists: " + std::string(label));
  }
  Botan::ECDSA_PrivateKey key(Botan::system_rng(), Botan::EC_Group("secp256r1"));
  signing_keys_.emplace(std::string(label), Botan::PKCS8::BER_encode(key));
  return ok_status();
}

Result<std::unique_ptr<Botan::Private_Key>> MemoryHsm::signing_key(std::string_view label) {
  if (failure_) return *failure_;
  auto it = signing_keys_.find(label);
  if (it == signing_keys_.end()) return missing(label);
  Botan::DataSource_Memory source(it->second);
  return Botan::PKCS8::load_key(source);
}

Result<Bytes> MemoryHsm::signing_public_key(std::string_view label) {
  std::lock_guard lock(mu_);
  KEKD_ASSIGN_OR_RETURN(std::unique_ptr<Botan::Private_Key> key, signing_key(label));
  return Botan::X509::BER_encode(*key);
}

Result<Bytes> MemoryHsm::sign(std::string_view label, ByteView message) {
  std::lock_guard lock(mu_);
  KEKD_ASSIGN_OR_RETURN(std::unique_ptr<Botan::Private_Key> key, signing_key(label));
  Botan::PK_Signer signer(*key, Botan::system_rng(), "EMSA1(SHA-256)", Botan::DER_SEQUENCE);
  return signer.sign_message(message.data(), message.size(), Botan::system_rng());
}

}  // namespace kekd::testing
