// Counts every HSM operation and its outcome for /metrics, around any Hsm.
#pragma once

#include "kekd/api/metrics.h"
#include "kekd/hsm/hsm.h"

namespace kekd::daemon {

class MeteredHsm final : public hsm::Hsm {
 public:
  MeteredHsm(hsm::Hsm& inner, api::Metrics& metrics) : inner_(inner), metrics_(metrics) {}

  Status generate_kek(std::string_view label) override {
    return count("generate_kek", inner_.generate_kek(label));
  }
  Result<std::vector<std::string>> find_keks(std::string_view prefix) override {
    return count("find_keks", inner_.find_keks(prefix));
  }
  Status destroy_kek(std::string_view label) override {
    return count("destroy_kek", inner_.destroy_kek(label));
  }
  Result<Bytes> wrap(std::string_view label, ByteView payload) override {
    return count("wrap", inner_.wrap(label, payload));
  }
  Result<SecretBytes> unwrap(std::string_view label, ByteView wrapped) override {
    return count("unwrap", inner_.unwrap(label, wrapped));
  }
  Result<SecretBytes> random(std::size_t n) override { return count("random", inner_.random(n)); }
  Status generate_signing_key(std::string_view label) override {
    return count("generate_signing_key", inner_.generate_signing_key(label));
  }
  Result<Bytes> signing_public_key(std::string_view label) override {
    return count("signing_public_key", inner_.signing_public_key(label));
  }
  Result<Bytes> sign(std::string_view label, ByteView message) override {
    return count("sign", inner_.sign(label, message));
  }
  std::unique_ptr<SessionHold> hold_session() override { return inner_.hold_session(); }

 private:
  // An invalid ciphertext is the caller's error, not the HSM's: it counts as a completed call.
  template <typename R>
  R count(const char* operation, R result) {
    bool ok = result.ok() || (result.error().code() != Code::kUnavailable &&
                              result.error().code() != Code::kInternal);
    metrics_.observe_hsm(operation, ok);
    return result;
  }

  hsm::Hsm& inner_;
  api::Metrics& metrics_;
};

}  // namespace kekd::daemon
