// Test-only crash points. A build configured with KEKD_FAULT_POINTS (tests only; never the
// production build) kills the process with SIGKILL when execution reaches the fault point named in
// the environment variable KEKD_FAULT_POINT, so end-to-end tests can prove crash safety at exactly
// the place that matters. In every other build the macro compiles to nothing.
#pragma once

#ifdef KEKD_FAULT_POINTS
namespace kekd {
void fault_point(const char* name);
}
#define KEKD_FAULT_POINT(name) ::kekd::fault_point(name)
#else
#define KEKD_FAULT_POINT(name) \
  do {                         \
  } while (false)
#endif
