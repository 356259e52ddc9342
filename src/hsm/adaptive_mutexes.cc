#include "adaptive_mutexes.h"

#include <pthread.h>

#include <new>

namespace kekd::hsm {
namespace {

CK_RV create_mutex(CK_VOID_PTR_PTR out) {
  auto* mutex = new (std::nothrow) pthread_mutex_t;
  if (mutex == nullptr) return CKR_HOST_MEMORY;
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
  int rc = pthread_mutex_init(mutex, &attr);
  pthread_mutexattr_destroy(&attr);
  if (rc != 0) {
    delete mutex;
    return CKR_GENERAL_ERROR;
  }
  *out = mutex;
  return CKR_OK;
}

CK_RV destroy_mutex(CK_VOID_PTR mutex) {
  auto* m = static_cast<pthread_mutex_t*>(mutex);
  pthread_mutex_destroy(m);
  delete m;
  return CKR_OK;
}

CK_RV lock_mutex(CK_VOID_PTR mutex) {
  return pthread_mutex_lock(static_cast<pthread_mutex_t*>(mutex)) == 0 ? CKR_OK : CKR_GENERAL_ERROR;
}

CK_RV unlock_mutex(CK_VOID_PTR mutex) {
  return pthread_mutex_unlock(static_cast<pthread_mutex_t*>(mutex)) == 0 ? CKR_OK
                                                                         : CKR_MUTEX_NOT_LOCKED;
}

}  // namespace

void use_adaptive_mutexes(CK_C_INITIALIZE_ARGS& args) {
  args.CreateMutex = create_mutex;
  args.DestroyMutex = destroy_mutex;
  args.LockMutex = lock_mutex;
  args.UnlockMutex = unlock_mutex;
}

}  // namespace kekd::hsm
