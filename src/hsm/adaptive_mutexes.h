// The mutexes a PKCS#11 module locks its own state with, handed to it in C_Initialize
// (CK_C_INITIALIZE_ARGS: CreateMutex, DestroyMutex, LockMutex, UnlockMutex): adaptive pthread
// mutexes, on which a thread that finds one locked spins for a moment before it sleeps.
//
// Why: a software token's critical sections are short (SoftHSM enters its session, handle and
// object stores several times per call), so two workers that meet there would otherwise pay a
// futex sleep and a wake-up for a wait shorter than either. Measured in docs/performance.md.
// Also used by the benchmark's ceiling program (tests/bench/hsm_ceiling.cc), so that both sides
// of the benchmark's ratio lock alike.
#pragma once

#include "pkcs11.h"

namespace kekd::hsm {

// Sets the four mutex functions of args. With CKF_OS_LOCKING_OK also set, a module may use
// either its own locking or these (PKCS#11 v2.40, C_Initialize); SoftHSM uses these.
void use_adaptive_mutexes(CK_C_INITIALIZE_ARGS& args);

}  // namespace kekd::hsm
