// kekd_hsm_ceiling: the in-process ceiling of DESIGN §10. It makes, in a tight C++ loop on one
// logged-in session per thread, exactly the PKCS#11 calls kekd makes per operation
// (src/hsm/pkcs11_hsm.cc, templates from src/hsm/kek_template.cc), so that kekd's HTTP throughput
// can be set against what the module itself can do:
//
//   wrap     C_CreateObject (session secret from the inner payload) + C_WrapKey
//            (CKM_AES_KEY_WRAP_PAD) + C_DestroyObject
//   unwrap   C_UnwrapKey + C_GetAttributeValue(CKA_VALUE) once, into a buffer of the wrapping's
//            length less 8 (the most the payload can be) + C_DestroyObject
//   datakey  C_GenerateRandom(DEK) + the three calls of wrap (kekd never uses C_GenerateKey here)
//
// What kekd wraps is the inner payload of docs/ciphertext.md: 32-byte context digest, 2-byte
// length, the DEK, zero padding to a multiple of 8 (72 bytes for a 32-byte DEK), so that is what
// is wrapped here. The KEK is found or created like kekd's: a non-extractable AES-256 token
// object, its handle looked up once and cached (kekd caches it too).
//
//   kekd_hsm_ceiling [--module PATH] [--token-label L] [--pin-file F | --pin-env VAR]
//                    [--kek-label L] [--seconds 3] [--threads 1,2] [--ops wrap,unwrap,datakey]
//                    [--dek-bytes 32] [--mutexes adaptive|os]
//
// --mutexes: by default the module locks with kekd's adaptive mutexes (src/hsm/adaptive_mutexes.h),
// as inside kekd; `os` leaves it its own.
//
// Prints one JSON line per (operation, threads):
//   {"op":"wrap","threads":2,"ops":54000,"seconds":3.000,"ops_per_sec":18000.0}
// Raw PKCS#11 on purpose: the point is to measure the module, with nothing of kekd in between.

#include <dlfcn.h>
#include <p11-kit/pkcs11.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "adaptive_mutexes.h"

namespace {

using Clock = std::chrono::steady_clock;
using Bytes = std::vector<CK_BYTE>;

// --- PKCS#11 helpers -----------------------------------------------------------------------------

struct CkError : std::runtime_error {
  CkError(const char* function, CK_RV rv)
      : std::runtime_error(std::string(function) + " failed: CK_RV 0x" + hex(rv)), rv(rv) {}
  static std::string hex(CK_RV rv) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%lx", rv);
    return buf;
  }
  CK_RV rv;
};

void check(CK_RV rv, const char* function) {
  if (rv != CKR_OK) {
    throw CkError(function, rv);
  }
}

// An attribute template that owns its values (the same shape as kekd's AttributeTemplate).
class Template {
 public:
  Template& ulong(CK_ATTRIBUTE_TYPE type, CK_ULONG value) {
    return add(type, &value, sizeof value);
  }
  Template& boolean(CK_ATTRIBUTE_TYPE type, bool value) {
    CK_BBOOL b = value ? CK_TRUE : CK_FALSE;
    return add(type, &b, sizeof b);
  }
  Template& bytes(CK_ATTRIBUTE_TYPE type, const void* value, std::size_t length) {
    return add(type, value, length);
  }
  CK_ATTRIBUTE* data() {
    // Pointers are fixed up here, once the values have stopped moving.
    for (std::size_t i = 0; i < attrs_.size(); ++i) {
      attrs_[i].pValue = values_[i].empty() ? nullptr : values_[i].data();
    }
    return attrs_.data();
  }
  CK_ULONG size() const { return attrs_.size(); }

 private:
  Template& add(CK_ATTRIBUTE_TYPE type, const void* value, std::size_t length) {
    const auto* p = static_cast<const CK_BYTE*>(value);
    values_.emplace_back(p, p + length);
    attrs_.push_back(CK_ATTRIBUTE{type, nullptr, static_cast<CK_ULONG>(length)});
    return *this;
  }
  std::vector<CK_ATTRIBUTE> attrs_;
  std::vector<Bytes> values_;
};

// kek_template() of src/hsm/kek_template.cc.
Template kek_template(const std::string& label, const Bytes& id) {
  CK_MECHANISM_TYPE allowed = CKM_AES_KEY_WRAP_PAD;
  Template t;
  t.ulong(CKA_CLASS, CKO_SECRET_KEY)
      .ulong(CKA_KEY_TYPE, CKK_AES)
      .ulong(CKA_VALUE_LEN, 32)
      .boolean(CKA_TOKEN, true)
      .boolean(CKA_PRIVATE, true)
      .boolean(CKA_SENSITIVE, true)
      .boolean(CKA_EXTRACTABLE, false)
      .boolean(CKA_WRAP, true)
      .boolean(CKA_UNWRAP, true)
      .boolean(CKA_ENCRYPT, false)
      .boolean(CKA_DECRYPT, false)
      .boolean(CKA_SIGN, false)
      .boolean(CKA_VERIFY, false)
      .boolean(CKA_DERIVE, false)
      .boolean(CKA_MODIFIABLE, false)
      .bytes(CKA_ALLOWED_MECHANISMS, &allowed, sizeof allowed)
      .bytes(CKA_LABEL, label.data(), label.size())
      .bytes(CKA_ID, id.data(), id.size());
  return t;
}

// payload_object_template() of src/hsm/kek_template.cc.
Template payload_object_template(const Bytes& payload) {
  Template t;
  t.ulong(CKA_CLASS, CKO_SECRET_KEY)
      .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
      .boolean(CKA_TOKEN, false)
      .boolean(CKA_PRIVATE, true)
      .boolean(CKA_SENSITIVE, true)
      .boolean(CKA_EXTRACTABLE, true)
      .bytes(CKA_VALUE, payload.data(), payload.size());
  return t;
}

// unwrapped_payload_template() of src/hsm/kek_template.cc.
Template unwrapped_payload_template() {
  Template t;
  t.ulong(CKA_CLASS, CKO_SECRET_KEY)
      .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
      .boolean(CKA_TOKEN, false)
      .boolean(CKA_PRIVATE, true)
      .boolean(CKA_SENSITIVE, false)
      .boolean(CKA_EXTRACTABLE, true);
  return t;
}

std::string trim_padded(const CK_UTF8CHAR* text, std::size_t width) {
  std::string s(reinterpret_cast<const char*>(text), width);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) {
    s.pop_back();
  }
  return s;
}

// The module, loaded and initialised as src/hsm/module.cc does.
class Module {
 public:
  Module(const std::string& path, const std::string& mutexes) {
    handle_ = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle_ == nullptr) {
      const char* why = ::dlerror();
      throw std::runtime_error("cannot load " + path + ": " + (why != nullptr ? why : "?"));
    }
    auto get_list = reinterpret_cast<CK_C_GetFunctionList>(::dlsym(handle_, "C_GetFunctionList"));
    if (get_list == nullptr) {
      throw std::runtime_error(path + " has no C_GetFunctionList");
    }
    check(get_list(&fn_), "C_GetFunctionList");
    CK_C_INITIALIZE_ARGS args{};
    args.flags = CKF_OS_LOCKING_OK;
    if (mutexes == "adaptive") kekd::hsm::use_adaptive_mutexes(args);  // as kekd does
    check(fn_->C_Initialize(&args), "C_Initialize");
  }
  ~Module() {
    fn_->C_Finalize(nullptr);
    ::dlclose(handle_);
  }
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  CK_FUNCTION_LIST* fn() const { return fn_; }

  CK_SLOT_ID find_token(const std::string& label) const {
    CK_ULONG count = 0;
    check(fn_->C_GetSlotList(CK_TRUE, nullptr, &count), "C_GetSlotList");
    std::vector<CK_SLOT_ID> slots(count);
    check(fn_->C_GetSlotList(CK_TRUE, slots.data(), &count), "C_GetSlotList");
    slots.resize(count);
    for (CK_SLOT_ID slot : slots) {
      CK_TOKEN_INFO info{};
      if (fn_->C_GetTokenInfo(slot, &info) == CKR_OK && (info.flags & CKF_TOKEN_INITIALIZED) != 0 &&
          trim_padded(info.label, sizeof info.label) == label) {
        return slot;
      }
    }
    throw std::runtime_error("no initialised token labelled '" + label + "'");
  }

 private:
  void* handle_ = nullptr;
  CK_FUNCTION_LIST* fn_ = nullptr;
};

// A logged-in R/W session, as kekd's session pool opens them (it tolerates the login another
// session of the process already made).
class Session {
 public:
  Session(CK_FUNCTION_LIST* fn, CK_SLOT_ID slot, const std::string& pin) : fn_(fn) {
    check(fn_->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &h_),
          "C_OpenSession");
    CK_RV rv = fn_->C_Login(
        h_, CKU_USER, reinterpret_cast<CK_UTF8CHAR*>(const_cast<char*>(pin.data())), pin.size());
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
      fn_->C_CloseSession(h_);
      throw CkError("C_Login", rv);
    }
  }
  ~Session() { fn_->C_CloseSession(h_); }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  CK_SESSION_HANDLE handle() const { return h_; }

 private:
  CK_FUNCTION_LIST* fn_;
  CK_SESSION_HANDLE h_ = CK_INVALID_HANDLE;
};

// The KEK labelled `label`, generated with kekd's template if the token has none.
CK_OBJECT_HANDLE find_or_create_kek(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE s,
                                    const std::string& label) {
  Template query;
  query.ulong(CKA_CLASS, CKO_SECRET_KEY).bytes(CKA_LABEL, label.data(), label.size());
  check(fn->C_FindObjectsInit(s, query.data(), query.size()), "C_FindObjectsInit");
  CK_OBJECT_HANDLE found[2];
  CK_ULONG count = 0;
  CK_RV rv = fn->C_FindObjects(s, found, 2, &count);
  fn->C_FindObjectsFinal(s);
  check(rv, "C_FindObjects");
  if (count > 1) {
    throw std::runtime_error("several keys are labelled " + label);
  }
  if (count == 1) {
    return found[0];
  }
  Bytes id(16);
  check(fn->C_GenerateRandom(s, id.data(), id.size()), "C_GenerateRandom");
  Template kek = kek_template(label, id);
  CK_MECHANISM mechanism{CKM_AES_KEY_GEN, nullptr, 0};
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
  check(fn->C_GenerateKey(s, &mechanism, kek.data(), kek.size(), &handle), "C_GenerateKey");
  return handle;
}

// --- the three operations, call for call as Pkcs11Hsm -------------------------------------------

// The inner payload kekd builds around a DEK (src/keys/inner_payload.cc): its size is all the
// module sees, so random bytes of that size stand in for it.
std::size_t payload_size(std::size_t dek_bytes) { return (32 + 2 + dek_bytes + 7) / 8 * 8; }

Bytes wrap(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE kek, const Bytes& payload) {
  Template object_template = payload_object_template(payload);
  CK_OBJECT_HANDLE object = CK_INVALID_HANDLE;
  check(fn->C_CreateObject(s, object_template.data(), object_template.size(), &object),
        "C_CreateObject");
  CK_MECHANISM mechanism{CKM_AES_KEY_WRAP_PAD, nullptr, 0};
  Bytes wrapped(payload.size() + 16);
  CK_ULONG length = wrapped.size();
  CK_RV rv = fn->C_WrapKey(s, &mechanism, kek, object, wrapped.data(), &length);
  fn->C_DestroyObject(s, object);
  check(rv, "C_WrapKey");
  wrapped.resize(length);
  return wrapped;
}

Bytes unwrap(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE kek, Bytes& wrapped) {
  Template object_template = unwrapped_payload_template();
  CK_MECHANISM mechanism{CKM_AES_KEY_WRAP_PAD, nullptr, 0};
  CK_OBJECT_HANDLE object = CK_INVALID_HANDLE;
  check(fn->C_UnwrapKey(s, &mechanism, kek, wrapped.data(), wrapped.size(), object_template.data(),
                        object_template.size(), &object),
        "C_UnwrapKey");
  // kekd's read_bounded_attribute: one call, into a buffer as long as the payload can be.
  Bytes payload(wrapped.size() - 8);
  CK_ATTRIBUTE attr{CKA_VALUE, payload.data(), static_cast<CK_ULONG>(payload.size())};
  CK_RV rv = fn->C_GetAttributeValue(s, object, &attr, 1);
  fn->C_DestroyObject(s, object);
  check(rv, "C_GetAttributeValue");
  payload.resize(attr.ulValueLen);
  return payload;
}

Bytes datakey(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE kek,
              std::size_t dek_bytes) {
  Bytes payload(payload_size(dek_bytes));
  // The DEK goes where build_payload puts it, after the digest and the length.
  check(fn->C_GenerateRandom(s, payload.data() + 34, dek_bytes), "C_GenerateRandom");
  return wrap(fn, s, kek, payload);
}

// --- the measurement -----------------------------------------------------------------------------

struct Options {
  std::string module = "/usr/lib/softhsm/libsofthsm2.so";
  std::string token_label = "kekd";
  std::string pin_file;
  std::string pin_env = "KEKD_HSM_PIN";
  std::string kek_label = "kekd-hsm-ceiling";
  double seconds = 3;
  std::vector<int> threads{1, 2};
  std::vector<std::string> ops{"wrap", "unwrap", "datakey"};
  std::size_t dek_bytes = 32;
  std::string mutexes = "adaptive";
};

// Like kekd's pin_file / pin_env: a trailing line end is not part of the PIN.
std::string load_pin(const Options& o) {
  std::string pin;
  if (!o.pin_file.empty()) {
    std::ifstream in(o.pin_file, std::ios::binary);
    if (!in) {
      throw std::runtime_error("cannot read PIN file " + o.pin_file);
    }
    pin.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  } else if (const char* value = std::getenv(o.pin_env.c_str())) {
    pin = value;
  }
  while (!pin.empty() && (pin.back() == '\n' || pin.back() == '\r')) {
    pin.pop_back();
  }
  if (pin.empty()) {
    throw std::runtime_error("no user PIN: give --pin-file, or set " + o.pin_env);
  }
  return pin;
}

struct Result {
  unsigned long long ops = 0;
  double seconds = 0;
};

// Runs `op` on `threads` sessions for `seconds`. The clock starts when the last thread is ready
// (the barrier's completion step) and stops when the last one has finished.
Result measure(CK_FUNCTION_LIST* fn, CK_OBJECT_HANDLE kek,
               std::vector<std::unique_ptr<Session>>& sessions, const std::string& op, int threads,
               const Options& o) {
  const auto duration =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.seconds));
  Clock::time_point begin;
  Clock::time_point deadline;
  std::barrier start(threads, [&]() noexcept {
    begin = Clock::now();
    deadline = begin + duration;
  });
  std::atomic<unsigned long long> total{0};
  std::atomic<bool> failed{false};
  std::string failure;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      CK_SESSION_HANDLE s = sessions[t]->handle();
      bool started = false;
      try {
        // Per-thread inputs, made (and the KEK touched once) before the clock starts.
        Bytes payload(payload_size(o.dek_bytes));
        check(fn->C_GenerateRandom(s, payload.data(), payload.size()), "C_GenerateRandom");
        Bytes wrapped = wrap(fn, s, kek, payload);
        started = true;
        start.arrive_and_wait();
        unsigned long long n = 0;
        while (Clock::now() < deadline && !failed.load(std::memory_order_relaxed)) {
          if (op == "wrap") {
            wrap(fn, s, kek, payload);
          } else if (op == "unwrap") {
            if (unwrap(fn, s, kek, wrapped) != payload) {
              throw std::runtime_error("unwrap returned other bytes than were wrapped");
            }
          } else {
            datakey(fn, s, kek, o.dek_bytes);
          }
          ++n;
        }
        total += n;
      } catch (const std::exception& e) {
        if (!failed.exchange(true)) {
          failure = e.what();
        }
        if (!started) {
          start.arrive_and_drop();  // the others must not wait for this thread
        }
      }
    });
  }
  for (std::thread& w : workers) {
    w.join();
  }
  Clock::time_point end = Clock::now();
  if (failed) {
    throw std::runtime_error(op + " with " + std::to_string(threads) + " threads: " + failure);
  }
  return Result{total.load(), std::chrono::duration<double>(end - begin).count()};
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"The in-process ceiling: kekd's PKCS#11 calls per operation, in a tight loop"};
  app.add_option("--module", o.module, "PKCS#11 module (default SoftHSM; can be the test shim)");
  app.add_option("--token-label", o.token_label, "label of the token to log in to");
  app.add_option("--pin-file", o.pin_file, "file holding the user PIN");
  app.add_option("--pin-env", o.pin_env, "environment variable holding the user PIN, if no file");
  app.add_option("--kek-label", o.kek_label, "label of the KEK to use (created if missing)");
  app.add_option("--seconds", o.seconds, "seconds per measurement")->check(CLI::PositiveNumber);
  app.add_option("--threads", o.threads, "thread counts, comma-separated")
      ->delimiter(',')
      ->check(CLI::Range(1, 256));
  app.add_option("--ops", o.ops, "operations, comma-separated")
      ->delimiter(',')
      ->check(CLI::IsMember({"wrap", "unwrap", "datakey"}));
  app.add_option("--dek-bytes", o.dek_bytes, "DEK size; kekd wraps 34 + this, padded to 8")
      ->check(CLI::Range(1, 1024));
  app.add_option("--mutexes", o.mutexes,
                 "the module's mutexes: kekd's adaptive ones, or the module's own (os)")
      ->check(CLI::IsMember({"adaptive", "os"}));
  CLI11_PARSE(app, argc, argv);

  try {
    std::string pin = load_pin(o);
    Module module(o.module, o.mutexes);
    CK_FUNCTION_LIST* fn = module.fn();
    CK_SLOT_ID slot = module.find_token(o.token_label);
    int max_threads = 1;
    for (int t : o.threads) {
      max_threads = std::max(max_threads, t);
    }
    std::vector<std::unique_ptr<Session>> sessions;
    for (int t = 0; t < max_threads; ++t) {
      sessions.push_back(std::make_unique<Session>(fn, slot, pin));
    }
    CK_OBJECT_HANDLE kek = find_or_create_kek(fn, sessions[0]->handle(), o.kek_label);
    for (const std::string& op : o.ops) {
      for (int threads : o.threads) {
        Result r = measure(fn, kek, sessions, op, threads, o);
        std::printf(
            "{\"op\":\"%s\",\"threads\":%d,\"ops\":%llu,\"seconds\":%.3f,\"ops_per_sec\":%.1f}\n",
            op.c_str(), threads, r.ops, r.seconds, r.ops / r.seconds);
        std::fflush(stdout);
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kekd_hsm_ceiling: %s\n", e.what());
    return 1;
  }
  return 0;
}
