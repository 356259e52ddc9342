// What kekd does to keep its memory out of core dumps and away from other processes
// (docs/secret-hygiene.md). The process holds the token PIN, client secrets while they are being
// checked, and DEKs while they are being wrapped or unwrapped.
#pragma once

#include "kekd/common/error.h"

namespace kekd::daemon {

// Called first by every kekd command, before any secret is read:
//  - prctl(PR_SET_DUMPABLE, 0): no core dump, and neither ptrace nor /proc/<pid>/mem, environ or
//    maps for other processes of the same user (only root, with CAP_SYS_PTRACE, still reads them);
//  - RLIMIT_CORE 0, soft and hard: also no core where fs.suid_dumpable = 2 would dump a
//    non-dumpable process anyway, and systemd-coredump keeps no core of a process whose limit is 0.
// Fails (kInternal) only if the kernel refuses; kekd does not run without them.
Status protect_process_memory();

}  // namespace kekd::daemon
