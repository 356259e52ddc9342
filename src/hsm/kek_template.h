// Attribute templates, built by typed setters (after Botan's p11 object properties), and the
// three templates kekd uses. The KEK's security policy (DESIGN §3) is defined here and nowhere
// else.
#pragma once

#include <deque>
#include <string_view>
#include <vector>

#include "kekd/common/bytes.h"
#include "pkcs11.h"

namespace kekd::hsm {

class AttributeTemplate {
 public:
  AttributeTemplate& set_bool(CK_ATTRIBUTE_TYPE type, bool value);
  AttributeTemplate& set_ulong(CK_ATTRIBUTE_TYPE type, CK_ULONG value);
  // Copies value into the template.
  AttributeTemplate& set_bytes(CK_ATTRIBUTE_TYPE type, ByteView value);
  // Points at the caller's bytes without copying them, so a secret value is not duplicated in
  // memory that is not wiped. The caller keeps them alive while the template is used.
  AttributeTemplate& set_borrowed(CK_ATTRIBUTE_TYPE type, ByteView value);
  AttributeTemplate& set_mechanisms(CK_ATTRIBUTE_TYPE type,
                                    const std::vector<CK_MECHANISM_TYPE>& mechanisms);

  CK_ATTRIBUTE* data() { return attrs_.data(); }
  CK_ULONG size() const { return attrs_.size(); }

 private:
  AttributeTemplate& add(CK_ATTRIBUTE_TYPE type, const void* value, std::size_t length);

  std::vector<CK_ATTRIBUTE> attrs_;
  std::deque<Bytes> storage_;  // a deque keeps the addresses of earlier values stable
};

// The only mechanism a KEK may be used with.
inline constexpr CK_MECHANISM_TYPE kKekMechanism = CKM_AES_KEY_WRAP_PAD;

// A KEK version: a non-extractable, non-modifiable AES-256 token key that can only wrap and unwrap
// with CKM_AES_KEY_WRAP_PAD. For C_GenerateKey with CKM_AES_KEY_GEN.
AttributeTemplate kek_template(std::string_view label, ByteView id);

// The transient session object that carries an inner payload into C_WrapKey: extractable (so it
// can be wrapped) but sensitive (so its value can leave the token only wrapped).
AttributeTemplate payload_object_template(ByteView payload);

// The transient session object that C_UnwrapKey creates from a ciphertext; its CKA_VALUE is read
// once and the object destroyed.
AttributeTemplate unwrapped_payload_template();

// kekd's own signing key pair (audit checkpoints, ceremony transcripts): ECDSA P-256 generated in
// the token with CKM_EC_KEY_PAIR_GEN; the private half non-extractable and usable only to sign.
AttributeTemplate signing_public_template(std::string_view label, ByteView id);
AttributeTemplate signing_private_template(std::string_view label, ByteView id);

}  // namespace kekd::hsm
