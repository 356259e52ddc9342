// A raw PKCS#11 session next to the adapter's pool, for tests that inspect or attack token
// objects directly (only tests of src/hsm itself use CK_* types).
#pragma once

#include <string>
#include <vector>

#include "hsm/module.h"
#include "hsm/pkcs11.h"
#include "kekd/common/bytes.h"
#include "kekd/hsm/pkcs11_hsm.h"

namespace kekd::testing {

class RawSession {
 public:
  // Opens a read-write session on the adapter's token. The adapter has logged in already, and
  // PKCS#11 login state is per application, so this session sees private objects too.
  explicit RawSession(hsm::Pkcs11Hsm& hsm);
  ~RawSession();

  CK_FUNCTION_LIST* fn() const { return fn_; }
  CK_SESSION_HANDLE handle() const { return session_; }

  // The single object with this label; fails the test otherwise.
  CK_OBJECT_HANDLE find(const std::string& label);
  CK_RV get(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type, Bytes& out);
  bool get_bool(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type);
  CK_ULONG get_ulong(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type);
  CK_RV set_bool(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type, bool value);

  // A session AES-256 key that may wrap and be wrapped, as a foil for the KEK.
  CK_OBJECT_HANDLE generate_session_aes_key();
  // A token AES-256 key of known value, extractable: only for the RFC 5649 oracle test, and as
  // an imposter under a KEK's label (with locked_down, sensitive and non-extractable from the
  // start: kek_identity_test.cc).
  CK_OBJECT_HANDLE import_known_aes_key(const std::string& label, ByteView value,
                                        bool locked_down = false);
  // A transient generic secret holding payload, as the adapter makes for C_WrapKey.
  CK_OBJECT_HANDLE create_payload_object(ByteView payload);

 private:
  CK_FUNCTION_LIST* fn_;
  CK_SESSION_HANDLE session_ = CK_INVALID_HANDLE;
};

}  // namespace kekd::testing
