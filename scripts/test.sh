#!/usr/bin/env bash
# Builds kekd and runs every test through ctest: unit tests, and integration tests against SoftHSM
# through the real PKCS#11 module with a fresh token directory per test case. Then
# scripts/sanitizers.sh: the unit and integration tests again under AddressSanitizer and
# UndefinedBehaviorSanitizer, and the concurrency tests under ThreadSanitizer (build-asan,
# build-tsan).
#
#   scripts/test.sh            install what is missing, configure, build, test
#   BUILD_DIR=... scripts/test.sh
#
# Then the fuzz stage: every libFuzzer target of tests/fuzz for KEKD_FUZZ_SECONDS each (default
# 20; 0 skips it), in its own clang build (scripts/fuzz.sh, build-fuzz/).
#
# Exits non-zero on any failure, a sanitizer report or a fuzz finding included. One line per fuzz
# target ends the output.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$root/build}
jobs=$(nproc)

bash "$root/scripts/install-deps.sh"

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKEKD_BUILD_TESTS=ON
cmake --build "$build" --parallel "$jobs"

# Tests never touch a system-wide token: each makes its own. This only guards against a
# SOFTHSM2_CONF inherited from the caller's shell leaking into a test that forgot to set one.
unset SOFTHSM2_CONF

(cd "$build" && ctest --output-on-failure --parallel "$jobs" --timeout 600)

bash "$root/scripts/sanitizers.sh"

fuzz_seconds=${KEKD_FUZZ_SECONDS:-20}
if [ "$fuzz_seconds" -gt 0 ]; then
  FUZZ_PARALLEL=$jobs bash "$root/scripts/fuzz.sh" "$fuzz_seconds"
fi
