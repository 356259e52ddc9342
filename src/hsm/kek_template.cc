#include "kek_template.h"

#include <cstring>

namespace kekd::hsm {

AttributeTemplate& AttributeTemplate::add(CK_ATTRIBUTE_TYPE type, const void* value,
                                          std::size_t length) {
  const auto* bytes = static_cast<const std::uint8_t*>(value);
  Bytes& stored = storage_.emplace_back(bytes, bytes + length);
  attrs_.push_back(CK_ATTRIBUTE{type, stored.data(), static_cast<CK_ULONG>(stored.size())});
  return *this;
}

AttributeTemplate& AttributeTemplate::set_bool(CK_ATTRIBUTE_TYPE type, bool value) {
  CK_BBOOL b = value ? CK_TRUE : CK_FALSE;
  return add(type, &b, sizeof b);
}

AttributeTemplate& AttributeTemplate::set_ulong(CK_ATTRIBUTE_TYPE type, CK_ULONG value) {
  return add(type, &value, sizeof value);
}

AttributeTemplate& AttributeTemplate::set_bytes(CK_ATTRIBUTE_TYPE type, ByteView value) {
  return add(type, value.data(), value.size());
}

AttributeTemplate& AttributeTemplate::set_borrowed(CK_ATTRIBUTE_TYPE type, ByteView value) {
  // PKCS#11 templates are non-const, but C_CreateObject only reads them.
  attrs_.push_back(CK_ATTRIBUTE{type, const_cast<std::uint8_t*>(value.data()),
                                static_cast<CK_ULONG>(value.size())});
  return *this;
}

AttributeTemplate& AttributeTemplate::set_mechanisms(
    CK_ATTRIBUTE_TYPE type, const std::vector<CK_MECHANISM_TYPE>& mechanisms) {
  return add(type, mechanisms.data(), mechanisms.size() * sizeof(CK_MECHANISM_TYPE));
}

AttributeTemplate kek_template(std::string_view label, ByteView id) {
  AttributeTemplate t;
  t.set_ulong(CKA_CLASS, CKO_SECRET_KEY)
      .set_ulong(CKA_KEY_TYPE, CKK_AES)
      .set_ulong(CKA_VALUE_LEN, 32)
      .set_bool(CKA_TOKEN, true)
      .set_bool(CKA_PRIVATE, true)
      .set_bool(CKA_SENSITIVE, true)
      .set_bool(CKA_EXTRACTABLE, false)
      .set_bool(CKA_WRAP, true)
      .set_bool(CKA_UNWRAP, true)
      .set_bool(CKA_ENCRYPT, false)
      .set_bool(CKA_DECRYPT, false)
      .set_bool(CKA_SIGN, false)
      .set_bool(CKA_VERIFY, false)
      .set_bool(CKA_DERIVE, false)
      .set_bool(CKA_MODIFIABLE, false)
      .set_mechanisms(CKA_ALLOWED_MECHANISMS, {kKekMechanism})
      .set_bytes(CKA_LABEL,
                 ByteView(reinterpret_cast<const std::uint8_t*>(label.data()), label.size()))
      .set_bytes(CKA_ID, id);
  return t;
}

AttributeTemplate payload_object_template(ByteView payload) {
  AttributeTemplate t;
  t.set_ulong(CKA_CLASS, CKO_SECRET_KEY)
      .set_ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
      .set_bool(CKA_TOKEN, false)
      .set_bool(CKA_PRIVATE, true)
      .set_bool(CKA_SENSITIVE, true)
      .set_bool(CKA_EXTRACTABLE, true)
      .set_borrowed(CKA_VALUE, payload);
  return t;
}

AttributeTemplate unwrapped_payload_template() {
  AttributeTemplate t;
  t.set_ulong(CKA_CLASS, CKO_SECRET_KEY)
      .set_ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
      .set_bool(CKA_TOKEN, false)
      .set_bool(CKA_PRIVATE, true)
      .set_bool(CKA_SENSITIVE, false)
      .set_bool(CKA_EXTRACTABLE, true);
  return t;
}

namespace {

// DER of the OID 1.2.840.10045.3.1.7, secp256r1 (P-256).
constexpr std::uint8_t kP256Params[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};

ByteView label_bytes(std::string_view label) {
  return ByteView(reinterpret_cast<const std::uint8_t*>(label.data()), label.size());
}

}  // namespace

AttributeTemplate signing_public_template(std::string_view label, ByteView id) {
  AttributeTemplate t;
  t.set_ulong(CKA_CLASS, CKO_PUBLIC_KEY)
      .set_ulong(CKA_KEY_TYPE, CKK_EC)
      .set_bytes(CKA_EC_PARAMS, ByteView(kP256Params, sizeof kP256Params))
      .set_bool(CKA_TOKEN, true)
      .set_bool(CKA_PRIVATE, false)
      .set_bool(CKA_VERIFY, true)
      .set_bool(CKA_ENCRYPT, false)
      .set_bool(CKA_WRAP, false)
      .set_bool(CKA_DERIVE, false)
      .set_bool(CKA_MODIFIABLE, false)
      .set_bytes(CKA_LABEL, label_bytes(label))
      .set_bytes(CKA_ID, id);
  return t;
}

AttributeTemplate signing_private_template(std::string_view label, ByteView id) {
  AttributeTemplate t;
  t.set_ulong(CKA_CLASS, CKO_PRIVATE_KEY)
      .set_ulong(CKA_KEY_TYPE, CKK_EC)
      .set_bool(CKA_TOKEN, true)
      .set_bool(CKA_PRIVATE, true)
      .set_bool(CKA_SENSITIVE, true)
      .set_bool(CKA_EXTRACTABLE, false)
      .set_bool(CKA_SIGN, true)
      .set_bool(CKA_DECRYPT, false)
      .set_bool(CKA_UNWRAP, false)
      .set_bool(CKA_DERIVE, false)
      .set_bool(CKA_MODIFIABLE, false)
      .set_mechanisms(CKA_ALLOWED_MECHANISMS, {CKM_ECDSA})
      .set_bytes(CKA_LABEL, label_bytes(label))
      .set_bytes(CKA_ID, id);
  return t;
}

}  // namespace kekd::hsm
