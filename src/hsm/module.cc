#include "module.h"

#include <dlfcn.h>

#include <cstring>
#include <string_view>
#include <vector>

#include "adaptive_mutexes.h"
#include "ck_result.h"

namespace kekd::hsm {
namespace {

// PKCS#11 strings are fixed-width and padded with spaces.
std::string_view trim_padded(const unsigned char* text, std::size_t width) {
  std::string_view s(reinterpret_cast<const char*>(text), width);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) {
    s.remove_suffix(1);
  }
  return s;
}

}  // namespace

Result<std::unique_ptr<Module>> Module::load(const std::string& path) {
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = ::dlerror();
    return Error(Code::kUnavailable, "cannot load PKCS#11 module " + path + ": " +
                                         (why != nullptr ? why : "unknown error"));
  }
  auto get_list = reinterpret_cast<CK_C_GetFunctionList>(::dlsym(handle, "C_GetFunctionList"));
  CK_FUNCTION_LIST* fn = nullptr;
  if (get_list == nullptr || get_list(&fn) != CKR_OK || fn == nullptr) {
    ::dlclose(handle);
    return Error(Code::kUnavailable, path + " is not a PKCS#11 module (no C_GetFunctionList)");
  }

  std::unique_ptr<Module> module(new Module(path, handle, fn));
  KEKD_RETURN_IF_ERROR(module->initialize());
  return module;
}

Status Module::initialize() {
  CK_C_INITIALIZE_ARGS args{};
  // kekd calls the module from a pool of threads. With both the flag and the functions, a module
  // may use either (PKCS#11 v2.40, C_Initialize); SoftHSM uses the functions.
  args.flags = CKF_OS_LOCKING_OK;
  use_adaptive_mutexes(args);
  CK_RV rv = fn_->C_Initialize(&args);
  if (rv != CKR_OK) {
    return ck_error(rv, "C_Initialize of " + path_);
  }
  initialized_ = true;
  return ok_status();
}

Status Module::reinitialize() {
  if (initialized_) {
    CK_RV rv = fn_->C_Finalize(nullptr);
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_NOT_INITIALIZED) {
      return ck_error(rv, "C_Finalize of " + path_);  // still initialised: nothing changed
    }
    initialized_ = false;
  }
  return initialize();
}

std::string Module::manufacturer() const {
  CK_INFO info{};
  if (fn_->C_GetInfo(&info) != CKR_OK) return "";
  return std::string(trim_padded(info.manufacturerID, sizeof info.manufacturerID));
}

Module::~Module() {
  if (initialized_) fn_->C_Finalize(nullptr);
  ::dlclose(handle_);
}

Result<CK_SLOT_ID> Module::find_token(const std::string& label) const {
  CK_ULONG count = 0;
  CK_RV rv = fn_->C_GetSlotList(CK_TRUE, nullptr, &count);
  if (rv != CKR_OK) {
    return ck_error(rv, "C_GetSlotList");
  }
  std::vector<CK_SLOT_ID> slots(count);
  rv = fn_->C_GetSlotList(CK_TRUE, slots.data(), &count);
  if (rv != CKR_OK) {
    return ck_error(rv, "C_GetSlotList");
  }
  slots.resize(count);

  std::vector<CK_SLOT_ID> matches;
  for (CK_SLOT_ID slot : slots) {
    CK_TOKEN_INFO info{};
    if (fn_->C_GetTokenInfo(slot, &info) != CKR_OK) {
      continue;  // a slot that cannot describe its token is not the one we look for
    }
    if ((info.flags & CKF_TOKEN_INITIALIZED) != 0 &&
        trim_padded(info.label, sizeof info.label) == label) {
      matches.push_back(slot);
    }
  }
  if (matches.empty()) {
    return Error(Code::kNotFound, "no initialised token labelled '" + label + "' in " + path_);
  }
  if (matches.size() > 1) {
    return Error(Code::kFailedPrecondition,
                 "several tokens are labelled '" + label + "' in " + path_);
  }
  return matches.front();
}

}  // namespace kekd::hsm
