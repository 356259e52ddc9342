// Converts PKCS#11 return values into kekd errors, in exactly one table (ck_result.cc).
#pragma once

#include <string_view>

#include "kekd/common/error.h"
#include "pkcs11.h"

namespace kekd::hsm {

// The meaning of some return values depends on the call. In C_UnwrapKey, a wrapped key that does
// not unwrap is the caller's bad ciphertext, not a broken HSM: SoftHSM 2.6.1 even answers
// CKR_GENERAL_ERROR for a failed RFC 5649 integrity check (DESIGN §4).
enum class CkCall { kGeneral, kUnwrap };

// The kekd error for rv (which must not be CKR_OK). `what` names the operation for the message.
Error ck_error(CK_RV rv, std::string_view what, CkCall call = CkCall::kGeneral);

// True when rv means this session handle is gone (closed under us, or the token went away),
// so the pool must replace the session.
bool ck_session_lost(CK_RV rv);

// True when rv means the device itself failed: the session is closed and reopened.
bool ck_device_failed(CK_RV rv);

// Symbolic name, e.g. "CKR_PIN_INCORRECT", for messages and logs.
std::string_view ck_rv_name(CK_RV rv);

}  // namespace kekd::hsm
