// What a fuzz target asserts. A broken property must stop the run as a crash, so that libFuzzer
// keeps the input that broke it (crash-<sha1>) and scripts/fuzz.sh reports it: FUZZ_CHECK prints
// the property and where, then aborts. Not assert(): the fuzz build may define NDEBUG.
#pragma once

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(condition)                                                               \
  do {                                                                                      \
    if (!(condition)) {                                                                     \
      std::fprintf(stderr, "%s:%d: property broken: %s\n", __FILE__, __LINE__, #condition); \
      std::abort();                                                                         \
    }                                                                                       \
  } while (false)
