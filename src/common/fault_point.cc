#include "kekd/common/fault_point.h"

#ifdef KEKD_FAULT_POINTS
#include <signal.h>

#include <cstdlib>
#include <cstring>

namespace kekd {

void fault_point(const char* name) {
  const char* armed = std::getenv("KEKD_FAULT_POINT");
  if (armed != nullptr && std::strcmp(armed, name) == 0) {
    ::raise(SIGKILL);
  }
}

}  // namespace kekd
#endif
