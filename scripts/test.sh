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
# Exits non-zero on any failure, a sanitizer report included.
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
