// The composition root: what `kekd init` and `kekd serve` open, in the order they need it.
#pragma once

#include <memory>
#include <string>

#include "kekd/api/credentials.h"
#include "kekd/daemon/config.h"
#include "kekd/hsm/pkcs11_hsm.h"
#include "kekd/keys/keyring.h"
#include "kekd/quorum/ceremony_service.h"
#include "kekd/store/sqlite_store.h"

namespace kekd::daemon {

// kekd's own token objects, besides the KEKs ("kekd:<name>:<version>").
inline constexpr std::string_view kSigningKeyLabel = "kekd-internal:audit";
inline constexpr std::string_view kInternalPrefix = "kekd-internal:";

struct Deployment {
  std::unique_ptr<hsm::Pkcs11Hsm> hsm;
  std::unique_ptr<store::SqliteStore> store;
  std::unique_ptr<keys::Keyring> keyring;
  std::unique_ptr<quorum::CeremonyService> ceremonies;
  std::unique_ptr<api::Credentials> credentials;
};

// Loads the PIN (file or environment, never argv), the module, and logs in.
Result<std::unique_ptr<hsm::Pkcs11Hsm>> open_hsm(const Config& config);

// Opens store, keyring, ceremony service and credentials, working through hsm (deployment.hsm
// itself, or a decorator around it).
Status open_services(const Config& config, hsm::Hsm& hsm, Deployment& deployment);

}  // namespace kekd::daemon
