// The HSM capability that the domain layers use (keys/, and later quorum/ and audit/).
//
// Security model: key encryption keys are generated inside the token and never leave it; this
// interface has no operation that returns KEK material. Callers name KEKs by their token label
// (`kekd:<name>:<version>`, see keys/key_name.h), because the token is the source of truth and
// labels are what start-up reconciliation compares with the store.
//
// Two implementations: Pkcs11Hsm (any PKCS#11 module, SoftHSM in tests) and, for fast unit tests
// of domain logic only, an in-memory fake in tests/support.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kekd/common/bytes.h"
#include "kekd/common/error.h"

namespace kekd::hsm {

class Hsm {
 public:
  virtual ~Hsm() = default;

  // Generates a non-extractable AES-256 KEK in the token with the template of DESIGN §3.
  // kAlreadyExists if an object with this label is already in the token.
  virtual Status generate_kek(std::string_view label) = 0;

  // Labels of all KEKs in the token whose label starts with prefix, sorted.
  virtual Result<std::vector<std::string>> find_keks(std::string_view prefix) = 0;

  // Deletes the KEK from the token. kNotFound if there is none with this label.
  virtual Status destroy_kek(std::string_view label) = 0;

  // RFC 5649 (CKM_AES_KEY_WRAP_PAD) wrap of payload under the KEK. The payload must be a multiple
  // of 8 bytes, at least 16: kekd frames and pads its payloads itself (DESIGN §4).
  // kNotFound if the KEK is not in the token.
  virtual Result<Bytes> wrap(std::string_view label, ByteView payload) = 0;

  // Inverse of wrap. A tampered input, or one wrapped under another key, is kInvalidCiphertext.
  virtual Result<SecretBytes> unwrap(std::string_view label, ByteView wrapped) = 0;

  // n bytes from the token's random number generator.
  virtual Result<SecretBytes> random(std::size_t n) = 0;

  // Generates an ECDSA P-256 key pair in the token: the private key non-extractable, usable only
  // to sign. kekd's audit checkpoints and ceremony transcripts are signed with it.
  // kAlreadyExists if a key with this label is already in the token.
  virtual Status generate_signing_key(std::string_view label) = 0;

  // The public half, as DER SubjectPublicKeyInfo. kNotFound if there is none.
  virtual Result<Bytes> signing_public_key(std::string_view label) = 0;

  // ECDSA P-256 over SHA-256 of message, DER-encoded (what `openssl dgst -sha256 -verify` takes).
  virtual Result<Bytes> sign(std::string_view label, ByteView message) = 0;

  // While the returned hold lives, the calling thread's calls keep the HSM session that the
  // first of them takes instead of taking and returning one per call: a batch's items run on one
  // session. Handing a single session back and forth between threads item by item costs a
  // wake-up per call, and on a token that serialises its work (SoftHSM) two threads in it at once
  // cost more than one (docs/performance.md). A call that fails gives the session back after
  // it; a call made while another thread waits for a session gives it back first and queues for
  // one like any other, so a long batch on a slow HSM does not keep others waiting. Destroy the
  // hold on the thread that made it, before anything that may wait long (the audit). A hold taken
  // inside another does nothing. An implementation without sessions returns an empty hold.
  class SessionHold {
   public:
    virtual ~SessionHold() = default;
  };
  virtual std::unique_ptr<SessionHold> hold_session() { return nullptr; }
};

}  // namespace kekd::hsm
