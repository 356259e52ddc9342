#include "support/raw_session.h"

#include <doctest/doctest.h>

#include <cstring>

#include "hsm/kek_template.h"

namespace kekd::testing {

RawSession::RawSession(hsm::Pkcs11Hsm& hsm) : fn_(hsm.module().fn()) {
  auto slot = hsm.module().find_token("kekd");
  REQUIRE(slot.ok());
  REQUIRE(fn_->C_OpenSession(*slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr,
                             &session_) == CKR_OK);
}

RawSession::~RawSession() { fn_->C_CloseSession(session_); }

CK_OBJECT_HANDLE RawSession::find(const std::string& label) {
  hsm::AttributeTemplate query;
  query.set_bytes(CKA_LABEL,
                  ByteView(reinterpret_cast<const std::uint8_t*>(label.data()), label.size()));
  REQUIRE(fn_->C_FindObjectsInit(session_, query.data(), query.size()) == CKR_OK);
  CK_OBJECT_HANDLE found[2];
  CK_ULONG count = 0;
  REQUIRE(fn_->C_FindObjects(session_, found, 2, &count) == CKR_OK);
  REQUIRE(fn_->C_FindObjectsFinal(session_) == CKR_OK);
  REQUIRE_MESSAGE(count == 1, "objects labelled ", label, ": ", count);
  return found[0];
}

CK_RV RawSession::get(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type, Bytes& out) {
  CK_ATTRIBUTE attr{type, nullptr, 0};
  CK_RV rv = fn_->C_GetAttributeValue(session_, object, &attr, 1);
  if (rv != CKR_OK) return rv;
  out.resize(attr.ulValueLen);
  attr.pValue = out.data();
  return fn_->C_GetAttributeValue(session_, object, &attr, 1);
}

bool RawSession::get_bool(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) {
  Bytes value;
  REQUIRE(get(object, type, value) == CKR_OK);
  REQUIRE(value.size() == sizeof(CK_BBOOL));
  return value[0] == CK_TRUE;
}

CK_ULONG RawSession::get_ulong(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) {
  Bytes value;
  REQUIRE(get(object, type, value) == CKR_OK);
  REQUIRE(value.size() == sizeof(CK_ULONG));
  CK_ULONG out;
  std::memcpy(&out, value.data(), sizeof out);
  return out;
}

CK_RV RawSession::set_bool(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type, bool value) {
  CK_BBOOL b = value ? CK_TRUE : CK_FALSE;
  CK_ATTRIBUTE attr{type, &b, sizeof b};
  return fn_->C_SetAttributeValue(session_, object, &attr, 1);
}

CK_OBJECT_HANDLE RawSession::generate_session_aes_key() {
  hsm::AttributeTemplate t;
  t.set_ulong(CKA_CLASS, CKO_SECRET_KEY)
      .set_ulong(CKA_KEY_TYPE, CKK_AES)
      .set_ulong(CKA_VALUE_LEN, 32)
      .set_bool(CKA_TOKEN, false)
      .set_bool(CKA_WRAP, true)
      .set_bool(CKA_UNWRAP, true)
      .set_bool(CKA_EXTRACTABLE, true)
      .set_bool(CKA_SENSITIVE, false);
  CK_MECHANISM mechanism{CKM_AES_KEY_GEN, nullptr, 0};
  CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
  REQUIRE(fn_->C_GenerateKey(session_, &mechanism, t.data(), t.size(), &key) == CKR_OK);
  return key;
}

CK_OBJECT_HANDLE RawSession::import_known_aes_key(const std::string& label, ByteView value,
                                                  bool locked_down) {
  hsm::AttributeTemplate t;
  t.set_ulong(CKA_CLASS, CKO_SECRET_KEY)
      .set_ulong(CKA_KEY_TYPE, CKK_AES)
      .set_bool(CKA_TOKEN, true)
      .set_bool(CKA_PRIVATE, true)
      .set_bool(CKA_WRAP, true)
      .set_bool(CKA_UNWRAP, true)
      .set_bool(CKA_EXTRACTABLE, !locked_down)
      .set_bool(CKA_SENSITIVE, locked_down)
      .set_bytes(CKA_LABEL,
                 ByteView(reinterpret_cast<const std::uint8_t*>(label.data()), label.size()))
      .set_bytes(CKA_VALUE, value);
  CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
  REQUIRE(fn_->C_CreateObject(session_, t.data(), t.size(), &key) == CKR_OK);
  return key;
}

CK_OBJECT_HANDLE RawSession::create_payload_object(ByteView payload) {
  hsm::AttributeTemplate t = hsm::payload_object_template(payload);
  CK_OBJECT_HANDLE object = CK_INVALID_HANDLE;
  REQUIRE(fn_->C_CreateObject(session_, t.data(), t.size(), &object) == CKR_OK);
  return object;
}

}  // namespace kekd::testing
