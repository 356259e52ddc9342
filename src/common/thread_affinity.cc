#include "kekd/common/thread_affinity.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <system_error>

namespace kekd {

std::vector<unsigned> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<unsigned> cpus;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return cpus;
  for (unsigned cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return cpus;
}

std::string cpu_list_text(std::vector<unsigned> cpus) {
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  std::string text;
  for (std::size_t i = 0; i < cpus.size();) {
    std::size_t end = i;  // the last CPU of the run that starts at i
    while (end + 1 < cpus.size() && cpus[end + 1] == cpus[end] + 1) ++end;
    if (!text.empty()) text += ',';
    text += std::to_string(cpus[i]);
    if (end > i) text += '-' + std::to_string(cpus[end]);
    i = end + 1;
  }
  return text;
}

Status check_cpus_allowed(const std::vector<unsigned>& cpus, const std::string& setting) {
  if (cpus.empty()) return ok_status();
  const std::vector<unsigned> allowed = allowed_cpus();
  if (allowed.empty()) {  // sched_getaffinity failed: a kernel with more than 1024 CPUs
    return Error(Code::kInvalidArgument,
                 setting + ": cannot read the CPUs kekd may run on (sched_getaffinity failed)");
  }
  for (unsigned cpu : cpus) {
    if (!std::binary_search(allowed.begin(), allowed.end(), cpu)) {
      return Error(Code::kInvalidArgument, setting + ": CPU " + std::to_string(cpu) +
                                               " is not one kekd may run on (" +
                                               cpu_list_text(allowed) + ")");
    }
  }
  return ok_status();
}

Status pin_thread(std::thread& thread, const std::vector<unsigned>& cpus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (unsigned cpu : cpus) {
    if (cpu >= CPU_SETSIZE) {
      return Error(Code::kInvalidArgument, "no such CPU: " + std::to_string(cpu));
    }
    CPU_SET(cpu, &set);
  }
  const int rc = pthread_setaffinity_np(thread.native_handle(), sizeof set, &set);
  if (rc != 0) {
    return Error(Code::kInvalidArgument, "cannot confine a thread to CPUs " + cpu_list_text(cpus) +
                                             ": " + std::system_category().message(rc));
  }
  return ok_status();
}

}  // namespace kekd
