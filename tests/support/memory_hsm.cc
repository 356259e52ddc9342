#include "support/memory_hsm.h"

#include <botan/block_cipher.h>
#include <botan/nist_keywrap.h>
#include <botan/system_rng.h>

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

}  // namespace kekd::testing
