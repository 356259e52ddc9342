#include "kekd/common/thread_name.h"

#include <pthread.h>

namespace kekd {

// Best effort: a name that does not fit is cut rather than refused, and a failure is harmless.
void name_this_thread(const char* name) {
  char cut[16] = {};
  for (int i = 0; i < 15 && name[i] != '\0'; ++i) cut[i] = name[i];
  (void)pthread_setname_np(pthread_self(), cut);
}

}  // namespace kekd
