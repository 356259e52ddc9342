#include "kekd/daemon/process_memory.h"

#include <sys/prctl.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstring>

namespace kekd::daemon {

Status protect_process_memory() {
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    return Error(Code::kInternal,
                 std::string("prctl(PR_SET_DUMPABLE, 0) failed: ") + std::strerror(errno));
  }
  // Lowering a limit is always allowed; the hard limit too, so that nothing kekd runs raises it.
  const struct rlimit none {};
  if (::setrlimit(RLIMIT_CORE, &none) != 0) {
    return Error(Code::kInternal,
                 std::string("setrlimit(RLIMIT_CORE, 0) failed: ") + std::strerror(errno));
  }
  return ok_status();
}

}  // namespace kekd::daemon
