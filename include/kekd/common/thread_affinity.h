// Confining threads to chosen CPUs: server.worker_cpus (docs/operations.md, "Confining the
// workers to one CPU"). A module that serialises its calls (SoftHSM) spends less CPU per
// operation when its callers never run on two CPUs at once.
#pragma once

#include <string>
#include <thread>
#include <vector>

#include "kekd/common/error.h"

namespace kekd {

// The CPUs this process may run on (sched_getaffinity), in ascending order.
std::vector<unsigned> allowed_cpus();

// A CPU list as the kernel writes one (Cpus_allowed_list): "0-3,6". For messages.
std::string cpu_list_text(std::vector<unsigned> cpus);

// kInvalidArgument naming `setting` unless every CPU of `cpus` (none is fine) is one this process
// may run on; also when that cannot be read (a machine with more than 1024 CPUs).
Status check_cpus_allowed(const std::vector<unsigned>& cpus, const std::string& setting);

// Lets `thread` run only on `cpus` (not empty). The kernel takes any online CPU, even one outside
// the process's own affinity: check_cpus_allowed first.
Status pin_thread(std::thread& thread, const std::vector<unsigned>& cpus);

}  // namespace kekd
