// Names the calling thread (at most 15 characters show), so that `top -H`, `perf report --sort
// comm` and a debugger tell kekd's threads apart: I/O, workers, the audit writer.
#pragma once

namespace kekd {

void name_this_thread(const char* name);

}  // namespace kekd
