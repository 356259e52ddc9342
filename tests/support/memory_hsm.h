// An in-memory Hsm for fast unit tests of domain logic. It is never proof that the PKCS#11 path
// works: tests/integration runs the same operations against SoftHSM.
#pragma once

#include <botan/pk_keys.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>

#include "kekd/hsm/hsm.h"

namespace kekd::testing {

class MemoryHsm final : public hsm::Hsm {
 public:
  Status generate_kek(std::string_view label) override;
  Result<std::vector<std::string>> find_keks(std::string_view prefix) override;
  Status destroy_kek(std::string_view label) override;
  Result<Bytes> wrap(std::string_view label, ByteView payload) override;
  Result<SecretBytes> unwrap(std::string_view label, ByteView wrapped) override;
  Result<SecretBytes> random(std::size_t n) override;
  Status generate_signing_key(std::string_view label) override;
  Result<Bytes> signing_public_key(std::string_view label) override;
  Result<Bytes> sign(std::string_view label, ByteView message) override;

  // Makes every following call fail with this error (nullopt: stop failing).
  void fail_with(std::optional<Error> error);

 private:
  // The signing key under label (call with mu_ held).
  Result<std::unique_ptr<Botan::Private_Key>> signing_key(std::string_view label);

  std::mutex mu_;
  std::map<std::string, SecretBytes, std::less<>> keks_;
  std::map<std::string, SecretBytes, std::less<>> signing_keys_;  // PKCS#8 DER
  std::optional<Error> failure_;
};

}  // namespace kekd::testing
