// libkekd_pkcs11_shim.so: a PKCS#11 module for tests that forwards every call to a real module
// (SoftHSM by default) after optionally delaying it or failing it, so that tests can give kekd a
// slow or failing HSM without one. Usage, the rule syntax and the control file:
// tests/pkcs11_shim/README.md.
//
// Only C_GetFunctionList is exported: kekd (src/hsm/module.cc), pkcs11-tool and PyKCS11 all reach
// every other function through the function list, and exporting C_* names from a library that
// dlopens another module with the same names would invite symbol interposition surprises.
//
// The effective rules live in per-function atomics, recomputed under a mutex when the control file
// changes; calls take that mutex only when a check of the file is due (every 50 ms by default).
// Nothing sleeps or calls the real module under a lock.

#include <dlfcn.h>
#include <p11-kit/pkcs11.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#define SHIM_EXPORT __attribute__((visibility("default")))

namespace {

// Every function of the v2.40 CK_FUNCTION_LIST except C_GetFunctionList (which returns the shim's
// own list): X(name, parameters, arguments).
#define SHIM_FORWARDED(X)                                                                         \
  X(C_Initialize, (CK_VOID_PTR init_args), (init_args))                                           \
  X(C_Finalize, (CK_VOID_PTR reserved), (reserved))                                               \
  X(C_GetInfo, (CK_INFO_PTR info), (info))                                                        \
  X(C_GetSlotList, (CK_BBOOL present, CK_SLOT_ID_PTR slots, CK_ULONG_PTR count),                  \
    (present, slots, count))                                                                      \
  X(C_GetSlotInfo, (CK_SLOT_ID slot, CK_SLOT_INFO_PTR info), (slot, info))                        \
  X(C_GetTokenInfo, (CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info), (slot, info))                      \
  X(C_GetMechanismList, (CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count),        \
    (slot, list, count))                                                                          \
  X(C_GetMechanismInfo, (CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info),    \
    (slot, type, info))                                                                           \
  X(C_InitToken, (CK_SLOT_ID slot, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len, CK_UTF8CHAR_PTR label), \
    (slot, pin, pin_len, label))                                                                  \
  X(C_InitPIN, (CK_SESSION_HANDLE s, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len), (s, pin, pin_len))   \
  X(C_SetPIN,                                                                                     \
    (CK_SESSION_HANDLE s, CK_UTF8CHAR_PTR old_pin, CK_ULONG old_len, CK_UTF8CHAR_PTR new_pin,     \
     CK_ULONG new_len),                                                                           \
    (s, old_pin, old_len, new_pin, new_len))                                                      \
  X(C_OpenSession,                                                                                \
    (CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify,                          \
     CK_SESSION_HANDLE_PTR session),                                                              \
    (slot, flags, app, notify, session))                                                          \
  X(C_CloseSession, (CK_SESSION_HANDLE s), (s))                                                   \
  X(C_CloseAllSessions, (CK_SLOT_ID slot), (slot))                                                \
  X(C_GetSessionInfo, (CK_SESSION_HANDLE s, CK_SESSION_INFO_PTR info), (s, info))                 \
  X(C_GetOperationState, (CK_SESSION_HANDLE s, CK_BYTE_PTR state, CK_ULONG_PTR len),              \
    (s, state, len))                                                                              \
  X(C_SetOperationState,                                                                          \
    (CK_SESSION_HANDLE s, CK_BYTE_PTR state, CK_ULONG len, CK_OBJECT_HANDLE enc_key,              \
     CK_OBJECT_HANDLE auth_key),                                                                  \
    (s, state, len, enc_key, auth_key))                                                           \
  X(C_Login, (CK_SESSION_HANDLE s, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len),     \
    (s, user, pin, pin_len))                                                                      \
  X(C_Logout, (CK_SESSION_HANDLE s), (s))                                                         \
  X(C_CreateObject,                                                                               \
    (CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR templ, CK_ULONG n, CK_OBJECT_HANDLE_PTR object),       \
    (s, templ, n, object))                                                                        \
  X(C_CopyObject,                                                                                 \
    (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR templ, CK_ULONG n,            \
     CK_OBJECT_HANDLE_PTR copy),                                                                  \
    (s, object, templ, n, copy))                                                                  \
  X(C_DestroyObject, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE object), (s, object))                 \
  X(C_GetObjectSize, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE object, CK_ULONG_PTR size),           \
    (s, object, size))                                                                            \
  X(C_GetAttributeValue,                                                                          \
    (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR templ, CK_ULONG n),           \
    (s, object, templ, n))                                                                        \
  X(C_SetAttributeValue,                                                                          \
    (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR templ, CK_ULONG n),           \
    (s, object, templ, n))                                                                        \
  X(C_FindObjectsInit, (CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR templ, CK_ULONG n), (s, templ, n))  \
  X(C_FindObjects,                                                                                \
    (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE_PTR objects, CK_ULONG max, CK_ULONG_PTR count),        \
    (s, objects, max, count))                                                                     \
  X(C_FindObjectsFinal, (CK_SESSION_HANDLE s), (s))                                               \
  X(C_EncryptInit, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key),            \
    (s, mech, key))                                                                               \
  X(C_Encrypt, SHIM_IN_OUT_PARAMS, SHIM_IN_OUT_ARGS)                                              \
  X(C_EncryptUpdate, SHIM_IN_OUT_PARAMS, SHIM_IN_OUT_ARGS)                                        \
  X(C_EncryptFinal, (CK_SESSION_HANDLE s, CK_BYTE_PTR out, CK_ULONG_PTR out_len),                 \
    (s, out, out_len))                                                                            \
  X(C_DecryptInit, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key),            \
    (s, mech, key))                                                                               \
  X(C_Decrypt, SHIM_IN_OUT_PARAMS, SHIM_IN_OUT_ARGS)                                              \
  X(C_DecryptUpdate, SHIM_IN_OUT_PARAMS, SHIM_IN_OUT_ARGS)                                        \
  X(C_DecryptFinal, (CK_SESSION_HANDLE s, CK_BYTE_PTR out, CK_ULONG_PTR out_len),                 \
    (s, out, out_len))                                                                            \
  X(C_DigestInit, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech), (s, mech))                        \
  X(C_Digest, SHIM_IN_OUT_PARAMS, SHIM_IN_OUT_ARGS)                                               \
  X(C_DigestUpdate, (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len), (s, in, in_len))      \
  X(C_DigestKey, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key), (s, key))                           \
  X(C_DigestFinal, (CK_SESSION_HANDLE s, CK_BYTE_PTR out, CK_ULONG_PTR out_len),                  \
    (s, out, out_len))                                                                            \
  X(C_SignInit, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key),               \
    (s, mech, key))                                                                               \
  X(C_Sign, SHIM_IN_OUT_PARAMS, SHIM_IN_OUT_ARGS)                                                 \
  X(C_SignUpdate, (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len), (s, in, in_len))        \
  X(C_SignFinal, (CK_SESSION_HANDLE s, CK_BYTE_PTR out, CK_ULONG_PTR out_len), (s, out, out_len)) \
  X(C_SignRecoverInit, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key),        \
    (s, mech, key))                                                                               \
  X(C_SignRecover, SHIM_IN_OUT_PARAMS, SHIM_IN_OUT_ARGS)                                          \
  X(C_VerifyInit, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key),             \
    (s, mech, key))                                                                               \
  X(C_Verify,                                                                                     \
    (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR sig, CK_ULONG sig_len),    \
    (s, in, in_len, sig, sig_len))                                                                \
  X(C_VerifyUpdate, (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len), (s, in, in_len))      \
  X(C_VerifyFinal, (CK_SESSION_HANDLE s, CK_BYTE_PTR sig, CK_ULONG sig_len), (s, sig, sig_len))   \
  X(C_VerifyRecoverInit, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key),      \
    (s, mech, key))                                                                               \
  X(C_VerifyRecover, SHIM_IN_OUT_PARAMS, SHIM_IN_OUT_ARGS)                                        \
  X(C_DigestEncryptUpdate, SHIM_IN_OUT_PARAMS, SHIM_IN_OUT_ARGS)                                  \
  X(C_DecryptDigestUpdate, SHIM_IN_OUT_PARAMS, SHIM_IN_OUT_ARGS)                                  \
  X(C_SignEncryptUpdate, SHIM_IN_OUT_PARAMS, SHIM_IN_OUT_ARGS)                                    \
  X(C_DecryptVerifyUpdate, SHIM_IN_OUT_PARAMS, SHIM_IN_OUT_ARGS)                                  \
  X(C_GenerateKey,                                                                                \
    (CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR templ, CK_ULONG n,              \
     CK_OBJECT_HANDLE_PTR key),                                                                   \
    (s, mech, templ, n, key))                                                                     \
  X(C_GenerateKeyPair,                                                                            \
    (CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR pub_templ, CK_ULONG pub_n,      \
     CK_ATTRIBUTE_PTR priv_templ, CK_ULONG priv_n, CK_OBJECT_HANDLE_PTR pub,                      \
     CK_OBJECT_HANDLE_PTR priv),                                                                  \
    (s, mech, pub_templ, pub_n, priv_templ, priv_n, pub, priv))                                   \
  X(C_WrapKey,                                                                                    \
    (CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE wrapping, CK_OBJECT_HANDLE key, \
     CK_BYTE_PTR out, CK_ULONG_PTR out_len),                                                      \
    (s, mech, wrapping, key, out, out_len))                                                       \
  X(C_UnwrapKey,                                                                                  \
    (CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE unwrapping, CK_BYTE_PTR in,     \
     CK_ULONG in_len, CK_ATTRIBUTE_PTR templ, CK_ULONG n, CK_OBJECT_HANDLE_PTR key),              \
    (s, mech, unwrapping, in, in_len, templ, n, key))                                             \
  X(C_DeriveKey,                                                                                  \
    (CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE base, CK_ATTRIBUTE_PTR templ,   \
     CK_ULONG n, CK_OBJECT_HANDLE_PTR key),                                                       \
    (s, mech, base, templ, n, key))                                                               \
  X(C_SeedRandom, (CK_SESSION_HANDLE s, CK_BYTE_PTR seed, CK_ULONG len), (s, seed, len))          \
  X(C_GenerateRandom, (CK_SESSION_HANDLE s, CK_BYTE_PTR out, CK_ULONG len), (s, out, len))        \
  X(C_GetFunctionStatus, (CK_SESSION_HANDLE s), (s))                                              \
  X(C_CancelFunction, (CK_SESSION_HANDLE s), (s))                                                 \
  X(C_WaitForSlotEvent, (CK_FLAGS flags, CK_SLOT_ID_PTR slot, CK_VOID_PTR reserved),              \
    (flags, slot, reserved))

// The shape shared by C_Encrypt, C_Sign, C_DigestEncryptUpdate and the like: data in, data out.
#define SHIM_IN_OUT_PARAMS \
  (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
#define SHIM_IN_OUT_ARGS (s, in, in_len, out, out_len)

// One index per function, for the rule tables and the call counters.
enum Fn {
  kC_GetFunctionList,
#define SHIM_ENUM(name, params, args) k##name,
  SHIM_FORWARDED(SHIM_ENUM)
#undef SHIM_ENUM
      kFnCount
};

// clang-format off
const char* const kFnNames[kFnCount] = {
    "C_GetFunctionList",
#define SHIM_NAME(name, params, args) #name,
    SHIM_FORWARDED(SHIM_NAME)
#undef SHIM_NAME
};
// clang-format on

// A `*` fault must not break loading and unloading the module (kekd's Module::load and the
// destructor), nor C_GetInfo that tools call while loading; naming these functions still works.
bool excluded_from_wildcard_fail(int fn) {
  return fn == kC_GetFunctionList || fn == kC_Initialize || fn == kC_Finalize || fn == kC_GetInfo;
}

// clang-format off
#define SHIM_CKR_NAMES(X)                                                                          \
  X(CKR_OK) X(CKR_CANCEL) X(CKR_HOST_MEMORY) X(CKR_SLOT_ID_INVALID) X(CKR_GENERAL_ERROR)          \
  X(CKR_FUNCTION_FAILED) X(CKR_ARGUMENTS_BAD) X(CKR_NO_EVENT) X(CKR_NEED_TO_CREATE_THREADS)        \
  X(CKR_CANT_LOCK) X(CKR_ATTRIBUTE_READ_ONLY) X(CKR_ATTRIBUTE_SENSITIVE)                           \
  X(CKR_ATTRIBUTE_TYPE_INVALID) X(CKR_ATTRIBUTE_VALUE_INVALID) X(CKR_ACTION_PROHIBITED)            \
  X(CKR_DATA_INVALID) X(CKR_DATA_LEN_RANGE) X(CKR_DEVICE_ERROR) X(CKR_DEVICE_MEMORY)               \
  X(CKR_DEVICE_REMOVED) X(CKR_ENCRYPTED_DATA_INVALID) X(CKR_ENCRYPTED_DATA_LEN_RANGE)              \
  X(CKR_FUNCTION_CANCELED) X(CKR_FUNCTION_NOT_PARALLEL) X(CKR_FUNCTION_NOT_SUPPORTED)              \
  X(CKR_KEY_HANDLE_INVALID) X(CKR_KEY_SIZE_RANGE) X(CKR_KEY_TYPE_INCONSISTENT)                     \
  X(CKR_KEY_NOT_NEEDED) X(CKR_KEY_CHANGED) X(CKR_KEY_NEEDED) X(CKR_KEY_INDIGESTIBLE)               \
  X(CKR_KEY_FUNCTION_NOT_PERMITTED) X(CKR_KEY_NOT_WRAPPABLE) X(CKR_KEY_UNEXTRACTABLE)              \
  X(CKR_MECHANISM_INVALID) X(CKR_MECHANISM_PARAM_INVALID) X(CKR_OBJECT_HANDLE_INVALID)             \
  X(CKR_OPERATION_ACTIVE) X(CKR_OPERATION_NOT_INITIALIZED) X(CKR_PIN_INCORRECT)                    \
  X(CKR_PIN_INVALID) X(CKR_PIN_LEN_RANGE) X(CKR_PIN_EXPIRED) X(CKR_PIN_LOCKED)                     \
  X(CKR_SESSION_CLOSED) X(CKR_SESSION_COUNT) X(CKR_SESSION_HANDLE_INVALID)                         \
  X(CKR_SESSION_PARALLEL_NOT_SUPPORTED) X(CKR_SESSION_READ_ONLY) X(CKR_SESSION_EXISTS)             \
  X(CKR_SESSION_READ_ONLY_EXISTS) X(CKR_SESSION_READ_WRITE_SO_EXISTS) X(CKR_SIGNATURE_INVALID)     \
  X(CKR_SIGNATURE_LEN_RANGE) X(CKR_TEMPLATE_INCOMPLETE) X(CKR_TEMPLATE_INCONSISTENT)               \
  X(CKR_TOKEN_NOT_PRESENT) X(CKR_TOKEN_NOT_RECOGNIZED) X(CKR_TOKEN_WRITE_PROTECTED)                \
  X(CKR_UNWRAPPING_KEY_SIZE_RANGE) X(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT)                         \
  X(CKR_USER_ALREADY_LOGGED_IN) X(CKR_USER_NOT_LOGGED_IN) X(CKR_USER_PIN_NOT_INITIALIZED)          \
  X(CKR_USER_TYPE_INVALID) X(CKR_USER_ANOTHER_ALREADY_LOGGED_IN) X(CKR_USER_TOO_MANY_TYPES)        \
  X(CKR_WRAPPED_KEY_INVALID) X(CKR_WRAPPED_KEY_LEN_RANGE) X(CKR_WRAPPING_KEY_HANDLE_INVALID)       \
  X(CKR_WRAPPING_KEY_SIZE_RANGE) X(CKR_WRAPPING_KEY_TYPE_INCONSISTENT)                             \
  X(CKR_RANDOM_SEED_NOT_SUPPORTED) X(CKR_RANDOM_NO_RNG) X(CKR_DOMAIN_PARAMS_INVALID)               \
  X(CKR_CURVE_NOT_SUPPORTED) X(CKR_BUFFER_TOO_SMALL) X(CKR_SAVED_STATE_INVALID)                    \
  X(CKR_INFORMATION_SENSITIVE) X(CKR_STATE_UNSAVEABLE) X(CKR_CRYPTOKI_NOT_INITIALIZED)             \
  X(CKR_CRYPTOKI_ALREADY_INITIALIZED) X(CKR_MUTEX_BAD) X(CKR_MUTEX_NOT_LOCKED)                     \
  X(CKR_NEW_PIN_MODE) X(CKR_NEXT_OTP) X(CKR_EXCEEDED_MAX_ITERATIONS) X(CKR_FIPS_SELF_TEST_FAILED)  \
  X(CKR_LIBRARY_LOAD_FAILED) X(CKR_PIN_TOO_WEAK) X(CKR_PUBLIC_KEY_INVALID)                         \
  X(CKR_FUNCTION_REJECTED)
// clang-format on

struct CkrName {
  const char* name;
  CK_RV rv;
};
const CkrName kCkrNames[] = {
#define SHIM_CKR(name) {#name, name},
    SHIM_CKR_NAMES(SHIM_CKR)
#undef SHIM_CKR
};

// --- rules ---------------------------------------------------------------------------------------

// What one source (the environment, or the control file) says about one function. `has_*` tells
// "no opinion" (fall through to the next source) from an explicit "no delay" / "no fault".
struct Rule {
  bool has_delay = false;
  long long delay_us = 0;
  bool has_fail = false;
  CK_RV fail = CKR_OK;  // CKR_OK with has_fail: explicitly no fault
  double rate = 1.0;    // probability that a call fails, for fail_rate
};

struct RuleSet {
  Rule fn[kFnCount];
  Rule any;  // `*`
};

bool parse_fn(const std::string& name, int* fn, bool* any) {
  if (name == "*") {
    *any = true;
    return true;
  }
  *any = false;
  for (int i = 0; i < kFnCount; ++i) {
    if (name == kFnNames[i]) {
      *fn = i;
      return true;
    }
  }
  return false;
}

// CKR_DEVICE_ERROR, DEVICE_ERROR, 0x30, 48, or none (= CKR_OK: no fault).
bool parse_rv(const std::string& text, CK_RV* rv) {
  if (text == "none") {
    *rv = CKR_OK;
    return true;
  }
  for (const CkrName& c : kCkrNames) {
    if (text == c.name || text == c.name + 4) {  // with or without the CKR_ prefix
      *rv = c.rv;
      return true;
    }
  }
  if (text.empty() || text[0] < '0' || text[0] > '9') {
    return false;
  }
  char* end = nullptr;
  errno = 0;
  unsigned long long value = std::strtoull(text.c_str(), &end, 0);
  if (errno != 0 || *end != '\0') {
    return false;
  }
  *rv = static_cast<CK_RV>(value);
  return true;
}

bool parse_us(const std::string& text, long long* us) {
  char* end = nullptr;
  errno = 0;
  long long value = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || errno != 0 || *end != '\0' || value < 0) {
    return false;
  }
  *us = value;
  return true;
}

bool parse_rate(const std::string& text, double* rate) {
  char* end = nullptr;
  double value = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !(value >= 0.0 && value <= 1.0)) {
    return false;
  }
  *rate = value;
  return true;
}

Rule& rule_for(RuleSet& set, int fn, bool any) { return any ? set.any : set.fn[fn]; }

// One rule, already split into words: `delay F US`, `hang F US`, `fail F CKR`,
// `fail_rate F CKR P`. Returns an error message, or "" when the rule was applied. A hang adds to
// a delay from the same source, so KEKD_SHIM_DELAY and KEKD_SHIM_HANG can name one function.
std::string apply_rule(RuleSet& set, const std::vector<std::string>& w) {
  if (w.size() < 3) {
    return "too few words";
  }
  int fn = 0;
  bool any = false;
  if (!parse_fn(w[1], &fn, &any)) {
    return "unknown function " + w[1];
  }
  Rule& rule = rule_for(set, fn, any);
  const std::string& kind = w[0];
  if ((kind == "delay" || kind == "hang") && w.size() == 3) {
    long long us = 0;
    if (!parse_us(w[2], &us)) {
      return "bad microseconds " + w[2];
    }
    rule.delay_us = (rule.has_delay && kind == "hang") ? rule.delay_us + us : us;
    rule.has_delay = true;
    return "";
  }
  if ((kind == "fail" && w.size() == 3) || (kind == "fail_rate" && w.size() == 4)) {
    CK_RV rv = CKR_OK;
    double rate = 1.0;
    if (!parse_rv(w[2], &rv)) {
      return "unknown CK_RV " + w[2];
    }
    if (kind == "fail_rate" && !parse_rate(w[3], &rate)) {
      return "bad probability " + w[3];
    }
    rule.has_fail = true;
    rule.fail = rv;
    rule.rate = rate;
    return "";
  }
  return "unknown rule";
}

std::vector<std::string> split(const std::string& text, const char* separators) {
  std::vector<std::string> out;
  std::string word;
  for (char c : text) {
    if (std::strchr(separators, c) != nullptr) {
      if (!word.empty()) {
        out.push_back(word);
      }
      word.clear();
    } else {
      word += c;
    }
  }
  if (!word.empty()) {
    out.push_back(word);
  }
  return out;
}

// KEKD_SHIM_DELAY="C_WrapKey=2000,*=100"; KEKD_SHIM_FAIL="C_WrapKey=CKR_DEVICE_ERROR" where a value
// may end in @P, a probability. Returns false (after saying why on stderr) on any bad entry: a
// typo in a test's fault must not silently test nothing.
bool parse_env(RuleSet& set, const char* variable, const char* kind) {
  const char* value = std::getenv(variable);
  if (value == nullptr) {
    return true;
  }
  for (const std::string& entry : split(value, ", ;\t\n")) {
    std::size_t eq = entry.find('=');
    std::vector<std::string> words{kind, entry.substr(0, eq),
                                   eq == std::string::npos ? "" : entry.substr(eq + 1)};
    std::size_t at = words[2].find('@');
    if (std::strcmp(kind, "fail") == 0 && at != std::string::npos) {
      words[0] = "fail_rate";
      words.push_back(words[2].substr(at + 1));
      words[2].resize(at);
    }
    std::string error = apply_rule(set, words);
    if (!error.empty()) {
      std::fprintf(stderr, "kekd_pkcs11_shim: %s: bad entry '%s': %s\n", variable, entry.c_str(),
                   error.c_str());
      return false;
    }
  }
  return true;
}

// The control file: one rule per line, `#` starts a comment. A bad line is reported and skipped.
RuleSet parse_control(const std::string& text, const std::string& path) {
  RuleSet set;
  int line_number = 0;
  for (const std::string& raw : split(text, "\n")) {
    ++line_number;
    std::string line = raw.substr(0, raw.find('#'));
    std::vector<std::string> words = split(line, " \t\r");
    if (words.empty()) {
      continue;
    }
    std::string error = apply_rule(set, words);
    if (!error.empty()) {
      std::fprintf(stderr, "kekd_pkcs11_shim: %s:%d: %s: %s (line ignored)\n", path.c_str(),
                   line_number, error.c_str(), raw.c_str());
    }
  }
  return set;
}

// --- state ---------------------------------------------------------------------------------------

CK_FUNCTION_LIST* g_real = nullptr;
CK_FUNCTION_LIST g_list;
pthread_once_t g_once = PTHREAD_ONCE_INIT;
bool g_loaded = false;
bool g_verbose = false;
RuleSet g_env_rules;  // written once, in load()

// The effective rules, read without a lock on every call. A reload stores them one by one, so a
// concurrent call may see a function's new delay with its old fault: harmless for tests.
std::atomic<long long> g_delay_us[kFnCount];
std::atomic<CK_RV> g_fail[kFnCount];
std::atomic<double> g_rate[kFnCount];
std::atomic<unsigned long long> g_calls[kFnCount];
std::atomic<unsigned long long> g_injected[kFnCount];

std::string g_control_path;
long long g_control_interval_ns = 50'000'000;
std::atomic<long long> g_last_check_ns{0};
std::mutex g_reload_mu;  // one reload at a time; held only while the file is checked
struct FileStamp {
  bool exists = false;
  ino_t ino = 0;
  off_t size = 0;
  timespec mtime{};
  timespec ctime{};
};
FileStamp g_control_stamp;  // guarded by g_reload_mu

long long now_ns(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return ts.tv_sec * 1'000'000'000LL + ts.tv_nsec;
}

// Precedence, highest first: the control file's rule for this function, its `*` rule, the
// environment's rule for this function, its `*` rule.
void publish(const RuleSet& file) {
  const RuleSet* sources[] = {&file, &g_env_rules};
  for (int fn = 0; fn < kFnCount; ++fn) {
    const Rule* delay = nullptr;
    const Rule* fail = nullptr;
    for (const RuleSet* source : sources) {
      if (delay == nullptr && source->fn[fn].has_delay) {
        delay = &source->fn[fn];
      }
      if (delay == nullptr && source->any.has_delay && fn != kC_GetFunctionList) {
        delay = &source->any;
      }
      if (fail == nullptr && source->fn[fn].has_fail) {
        fail = &source->fn[fn];
      }
      if (fail == nullptr && source->any.has_fail && !excluded_from_wildcard_fail(fn)) {
        fail = &source->any;
      }
    }
    g_delay_us[fn].store(delay != nullptr ? delay->delay_us : 0, std::memory_order_relaxed);
    g_rate[fn].store(fail != nullptr ? fail->rate : 1.0, std::memory_order_relaxed);
    g_fail[fn].store(fail != nullptr ? fail->fail : CKR_OK, std::memory_order_release);
    if (g_verbose &&
        ((delay != nullptr && delay->delay_us > 0) || (fail != nullptr && fail->fail != CKR_OK))) {
      std::fprintf(stderr, "kekd_pkcs11_shim: %s: delay %lld us, fail 0x%lx at rate %g\n",
                   kFnNames[fn], delay != nullptr ? delay->delay_us : 0,
                   fail != nullptr ? fail->fail : CKR_OK, fail != nullptr ? fail->rate : 0.0);
    }
  }
}

bool same_time(const timespec& a, const timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

// Called with g_reload_mu held. Re-reads the file when its stamp changed, and also while it was
// modified less than 2 s ago: file timestamps tick coarsely (a few ms), so two writes of the same
// size within one tick would otherwise look like one.
void check_control_file(bool force) {
  FileStamp stamp;
  struct stat st {};
  if (::stat(g_control_path.c_str(), &st) == 0) {
    stamp.exists = true;
    stamp.ino = st.st_ino;
    stamp.size = st.st_size;
    stamp.mtime = st.st_mtim;
    stamp.ctime = st.st_ctim;
  }
  const FileStamp& old = g_control_stamp;
  bool unchanged = stamp.exists == old.exists && stamp.ino == old.ino && stamp.size == old.size &&
                   same_time(stamp.mtime, old.mtime) && same_time(stamp.ctime, old.ctime);
  long long modified_ns = stamp.mtime.tv_sec * 1'000'000'000LL + stamp.mtime.tv_nsec;
  bool recent = stamp.exists && now_ns(CLOCK_REALTIME) - modified_ns < 2'000'000'000LL;
  if (!force && unchanged && !recent) {
    return;
  }
  g_control_stamp = stamp;
  std::string text;
  if (stamp.exists) {
    if (FILE* f = std::fopen(g_control_path.c_str(), "r")) {
      char buffer[4096];
      std::size_t n;
      while ((n = std::fread(buffer, 1, sizeof buffer, f)) > 0) {
        text.append(buffer, n);
      }
      std::fclose(f);
    }
  }
  publish(parse_control(text, g_control_path));
}

void maybe_reload_control() {
  if (g_control_path.empty()) {
    return;
  }
  long long now = now_ns(CLOCK_MONOTONIC);
  long long last = g_last_check_ns.load(std::memory_order_relaxed);
  if (now - last < g_control_interval_ns) {
    return;
  }
  // A call that finds a check due waits for it, however it is shared out: one that went on with
  // the old rules while another thread re-read the file could start a hang the control file has
  // already ended (seen in CI: two calls entering together after a hang, one of them hung 3 s
  // more). The lock is held only for a stat and a read of a small file.
  std::lock_guard lock(g_reload_mu);
  if (now - g_last_check_ns.load(std::memory_order_relaxed) < g_control_interval_ns) {
    return;  // another thread checked while this one waited
  }
  g_last_check_ns.store(now_ns(CLOCK_MONOTONIC), std::memory_order_relaxed);
  check_control_file(false);
}

void sleep_us(long long us) {
  timespec deadline{};
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  long long ns = deadline.tv_nsec + (us % 1'000'000) * 1000;
  deadline.tv_sec += us / 1'000'000 + ns / 1'000'000'000;
  deadline.tv_nsec = ns % 1'000'000'000;
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, nullptr) == EINTR) {
  }
}

// xorshift64*, one state per thread: fail_rate needs cheap numbers, not good ones.
double next_random() {
  thread_local std::uint64_t state = 0;
  if (state == 0) {
    state = static_cast<std::uint64_t>(now_ns(CLOCK_MONOTONIC)) ^
            reinterpret_cast<std::uintptr_t>(&state) ^ 0x9e3779b97f4a7c15ULL;
  }
  state ^= state >> 12;
  state ^= state << 25;
  state ^= state >> 27;
  return static_cast<double>((state * 0x2545f4914f6cdd1dULL) >> 11) / 9007199254740992.0;
}

// Counts the call, applies its delay, then returns the fault to inject, or CKR_OK to call through.
CK_RV before_call(int fn) {
  g_calls[fn].fetch_add(1, std::memory_order_relaxed);
  maybe_reload_control();
  long long delay = g_delay_us[fn].load(std::memory_order_relaxed);
  if (delay > 0) {
    sleep_us(delay);
  }
  CK_RV rv = g_fail[fn].load(std::memory_order_acquire);
  if (rv == CKR_OK) {
    return CKR_OK;
  }
  double rate = g_rate[fn].load(std::memory_order_relaxed);
  if (rate < 1.0 && next_random() >= rate) {
    return CKR_OK;
  }
  g_injected[fn].fetch_add(1, std::memory_order_relaxed);
  return rv;
}

// KEKD_SHIM_STATS: `function calls injected_faults`, one line per function called, written whole
// (temporary file and rename) so a reader never sees half of it.
void write_stats() {
  const char* path = std::getenv("KEKD_SHIM_STATS");
  if (path == nullptr || *path == '\0') {
    return;
  }
  std::string tmp = std::string(path) + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) {
    return;
  }
  for (int fn = 0; fn < kFnCount; ++fn) {
    unsigned long long calls = g_calls[fn].load(std::memory_order_relaxed);
    if (calls > 0) {
      std::fprintf(f, "%s %llu %llu\n", kFnNames[fn], calls,
                   g_injected[fn].load(std::memory_order_relaxed));
    }
  }
  std::fclose(f);
  std::rename(tmp.c_str(), path);
}

#define SHIM_FORWARD(name, params, args)           \
  CK_RV shim_##name params {                       \
    CK_RV injected = before_call(k##name);         \
    if (injected != CKR_OK) {                      \
      return injected;                             \
    }                                              \
    if (g_real->name == nullptr) {                 \
      return CKR_FUNCTION_NOT_SUPPORTED;           \
    }                                              \
    CK_RV rv = g_real->name args;                  \
    if (k##name == kC_Finalize && rv == CKR_OK) {  \
      write_stats(); /* the module's normal end */ \
    }                                              \
    return rv;                                     \
  }
SHIM_FORWARDED(SHIM_FORWARD)
#undef SHIM_FORWARD

CK_RV shim_C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list);

void load() {
  g_verbose = std::getenv("KEKD_SHIM_VERBOSE") != nullptr;
  if (!parse_env(g_env_rules, "KEKD_SHIM_DELAY", "delay") ||
      !parse_env(g_env_rules, "KEKD_SHIM_HANG", "hang") ||
      !parse_env(g_env_rules, "KEKD_SHIM_FAIL", "fail")) {
    return;
  }
  if (const char* interval = std::getenv("KEKD_SHIM_CONTROL_INTERVAL_MS")) {
    g_control_interval_ns = std::atoll(interval) * 1'000'000LL;
  }
  const char* env_module = std::getenv("KEKD_SHIM_MODULE");
  const char* module = (env_module != nullptr && *env_module != '\0')
                           ? env_module
                           : "/usr/lib/softhsm/libsofthsm2.so";
  void* handle = ::dlopen(module, RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = ::dlerror();
    std::fprintf(stderr, "kekd_pkcs11_shim: cannot load %s: %s\n", module,
                 why != nullptr ? why : "unknown error");
    return;
  }
  auto get_list = reinterpret_cast<CK_C_GetFunctionList>(::dlsym(handle, "C_GetFunctionList"));
  CK_FUNCTION_LIST* real = nullptr;
  if (get_list == nullptr || get_list == &C_GetFunctionList) {
    std::fprintf(stderr, "kekd_pkcs11_shim: %s is not a PKCS#11 module other than the shim\n",
                 module);
    return;
  }
  if (get_list(&real) != CKR_OK || real == nullptr) {
    std::fprintf(stderr, "kekd_pkcs11_shim: C_GetFunctionList of %s failed\n", module);
    return;
  }
  g_real = real;
  // The shim's list has the v2.40 layout whatever the real module's version says.
  g_list.version.major = CRYPTOKI_VERSION_MAJOR;
  g_list.version.minor = CRYPTOKI_VERSION_MINOR;
  g_list.C_GetFunctionList = shim_C_GetFunctionList;
#define SHIM_FILL(name, params, args) g_list.name = shim_##name;
  SHIM_FORWARDED(SHIM_FILL)
#undef SHIM_FILL

  const char* control = std::getenv("KEKD_SHIM_CONTROL");
  g_control_path = control != nullptr ? control : "";
  {
    std::lock_guard lock(g_reload_mu);
    if (g_control_path.empty()) {
      publish(RuleSet{});
    } else {
      check_control_file(true);
      g_last_check_ns.store(now_ns(CLOCK_MONOTONIC), std::memory_order_relaxed);
    }
  }
  g_loaded = true;
}

CK_RV shim_C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
  pthread_once(&g_once, load);
  if (!g_loaded) {
    return CKR_GENERAL_ERROR;  // load() said why on stderr
  }
  if (list == nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  CK_RV injected = before_call(kC_GetFunctionList);
  if (injected != CKR_OK) {
    return injected;
  }
  *list = &g_list;
  return CKR_OK;
}

// A process that exits without calling C_Finalize (a script that never unloads the module) still
// leaves its counts behind; only kill -9 loses them.
__attribute__((destructor)) void write_stats_at_unload() {
  if (g_loaded) {
    write_stats();
  }
}

}  // namespace

extern "C" SHIM_EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
  return shim_C_GetFunctionList(list);
}
