// A loaded PKCS#11 module: dlopen, C_GetFunctionList, C_Initialize on creation, C_Finalize and
// dlclose on destruction (RAII, after Botan's p11::Module).
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "kekd/common/error.h"
#include "pkcs11.h"

namespace kekd::hsm {

class Module {
 public:
  // Loads the module at path and initialises it for use from several threads, with kekd's
  // adaptive mutexes for its locking (adaptive_mutexes.h).
  static Result<std::unique_ptr<Module>> load(const std::string& path);

  ~Module();
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // The slot holding the initialised token with this label. kNotFound if none; kFailedPrecondition
  // if several tokens share the label (kekd would not know which one holds its keys).
  Result<CK_SLOT_ID> find_token(const std::string& label) const;

  CK_FUNCTION_LIST* fn() const { return fn_; }
  const std::string& path() const { return path_; }

  // C_Finalize, then C_Initialize again, with every session of the process closed first and no
  // other call running (the caller's job). Some modules free what they hold for closed sessions
  // only at C_Finalize (SessionPool::reinitialize). If C_Finalize fails, nothing changed and
  // initialized() stays true; after a failed C_Initialize it is false, and this may be called
  // again. C_Finalize is per process: no other user of the module may share it.
  Status reinitialize();
  bool initialized() const { return initialized_.load(); }

  // C_GetInfo's manufacturerID without its padding ("SoftHSM"); empty if the module cannot say.
  std::string manufacturer() const;

 private:
  Module(std::string path, void* handle, CK_FUNCTION_LIST* fn)
      : path_(std::move(path)), handle_(handle), fn_(fn) {}

  Status initialize();

  std::string path_;
  void* handle_;
  CK_FUNCTION_LIST* fn_;
  std::atomic<bool> initialized_{false};  // may be read from any thread
};

}  // namespace kekd::hsm
