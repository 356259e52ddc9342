#include "kekd/daemon/deployment.h"

#include <filesystem>

#include "kekd/hsm/pin.h"

namespace kekd::daemon {

Result<std::unique_ptr<hsm::Pkcs11Hsm>> open_hsm(const Config& config) {
  hsm::Pkcs11Config p11;
  p11.module_path = config.hsm.module;
  p11.token_label = config.hsm.token_label;
  p11.sessions = config.hsm.sessions;
  p11.acquire_timeout = std::chrono::milliseconds(config.hsm.acquire_timeout);
  p11.stall_threshold = std::chrono::milliseconds(config.hsm.stall_threshold);
  p11.reinitialize_after = config.hsm.reinitialize_after;
  if (!config.hsm.pin_file.empty()) {
    KEKD_ASSIGN_OR_RETURN(p11.pin, hsm::load_pin_from_file(config.hsm.pin_file));
  } else {
    KEKD_ASSIGN_OR_RETURN(p11.pin, hsm::load_pin_from_env(config.hsm.pin_env));
  }
  return hsm::Pkcs11Hsm::open(std::move(p11));
}

Status open_services(const Config& config, hsm::Hsm& hsm, Deployment& d) {
  std::error_code ignored;
  std::filesystem::create_directories(std::filesystem::path(config.store_path).parent_path(),
                                      ignored);
  KEKD_ASSIGN_OR_RETURN(d.store, store::SqliteStore::open(config.store_path));
  KEKD_ASSIGN_OR_RETURN(d.keyring, keys::Keyring::open(hsm, *d.store));
  quorum::CeremonyOptions options;
  options.ttl = config.ceremony.ttl;
  options.min_destroy_delay = config.ceremony.min_destroy_delay;
  options.default_destroy_delay = config.ceremony.default_destroy_delay;
  KEKD_ASSIGN_OR_RETURN(
      d.ceremonies, quorum::CeremonyService::open(*d.store, *d.keyring, hsm, options, now_millis));
  d.credentials = std::make_unique<api::Credentials>(hsm, *d.store);
  return ok_status();
}

}  // namespace kekd::daemon
