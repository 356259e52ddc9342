#!/usr/bin/env bash
# Builds the unit and integration test binaries with sanitizers and runs them; any sanitizer report
# fails the run (called by scripts/test.sh after the ordinary ctest run).
#
#   scripts/sanitizers.sh           both stages below
#   scripts/sanitizers.sh asan      AddressSanitizer + UndefinedBehaviorSanitizer (+ LeakSanitizer):
#                                   every test case of kekd_unit_tests and kekd_integration_tests
#   scripts/sanitizers.sh tsan      ThreadSanitizer: the test cases in the doctest test suite
#                                   "concurrency" (those that run several threads; see
#                                   tests/sanitizers/README.md for how a test joins it)
#
# Build directories: build-asan and build-tsan (ASAN_BUILD_DIR, TSAN_BUILD_DIR). Jobs: 2
# (KEKD_SANITIZER_JOBS), for builds and for tests. Only the two test binaries are built: kekd
# itself, kekctl and the end-to-end tests are not, which is what keeps this stage short.
#
# Every test case runs in its own process, as under ctest: the integration fixtures point
# SOFTHSM2_CONF at a fresh token per test case, which SoftHSM reads once per process.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
jobs=${KEKD_SANITIZER_JOBS:-2}
supp=$root/tests/sanitizers
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(asan tsan)

# Any report ends the test process with a non-zero status (abort_on_error: SIGABRT, so that not
# even a test that exits on its own can hide it). LeakSanitizer runs at exit (detect_leaks).
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1:strict_init_order=1:suppressions=$supp/asan.supp"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1:report_error_type=1"
export TSAN_OPTIONS="halt_on_error=1:abort_on_error=1:second_deadlock_stack=1:suppressions=$supp/tsan.supp:print_suppressions=0"
# As in scripts/test.sh: a SOFTHSM2_CONF from the caller's shell must not reach a test.
unset SOFTHSM2_CONF

launcher=()
if command -v ccache >/dev/null 2>&1; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi

# configure_and_build DIR SANITIZERS
configure_and_build() {
  # -O1: the sanitizers' own advice (fast enough, exact stacks); -g1: line tables for the reports,
  # at a fraction of the compile time of full debug information.
  cmake -S "$root" -B "$1" -G Ninja "${launcher[@]}" -DCMAKE_BUILD_TYPE=Debug \
    "-DCMAKE_CXX_FLAGS_DEBUG=-O1 -g1" -DKEKD_BUILD_TESTS=ON "-DKEKD_SANITIZE=$2" >/dev/null
  # kekd_store_probe: the second process of the store's multi-process tests.
  cmake --build "$1" --parallel "$jobs" --target kekd_unit_tests kekd_integration_tests \
    kekd_store_probe
}

# run_one BINARY LOGDIR TESTCASE: one test case in its own process; prints one line, and the
# whole output if it failed.
run_one() {
  local binary=$1 logdir=$2 name=$3
  local log started rc=0
  log="$logdir/$(printf '%s' "$name" | tr -c 'A-Za-z0-9_.-' '_').log"
  started=$(date +%s)
  # doctest filters split on ',' and take '\' as the escape for it.
  timeout 600 "$binary" --test-case="${name//,/\\,}" >"$log" 2>&1 || rc=$?
  # A filter that matched nothing would pass: insist that exactly this one case ran.
  if [ "$rc" -eq 0 ] && ! grep -Eq '^\[doctest\] test cases: +1 \| +1 passed' "$log"; then
    echo "(the test case did not run exactly once)" >>"$log"
    rc=1
  fi
  if [ "$rc" -eq 0 ]; then
    echo "ok   $(basename "$binary"): $name ($(($(date +%s) - started))s)"
  else
    echo "FAIL $(basename "$binary"): $name (exit $rc)"
    sed 's/^/    /' "$log"
    return 1
  fi
}
export -f run_one

# run_cases LABEL BINARY... [-- DOCTEST_FILTER]: every selected test case of each binary, $jobs at
# a time; fails if any fails or if the filter selects no test case at all.
run_cases() {
  local label=$1
  shift
  local binaries=() filter=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    binaries+=("$1")
    shift
  done
  [ $# -gt 0 ] && shift && filter=("$@")
  local logdir list
  logdir=$(mktemp -d "${TMPDIR:-/tmp}/kekd-$label.XXXXXX")
  list="$logdir/cases"
  : >"$list"
  for b in "${binaries[@]}"; do
    # doctest prints the names between its own "[doctest]" and "====" lines.
    "$b" --list-test-cases "${filter[@]}" | grep -Ev '^(\[doctest\] |=+$)' |
      while IFS= read -r name; do printf '%s\t%s\n' "$b" "$name"; done >>"$list"
  done
  local count
  count=$(wc -l <"$list")
  if [ "$count" -eq 0 ]; then
    echo "$label: no test case selected" >&2
    return 1
  fi
  echo "$label: $count test cases, $jobs at a time"
  local started rc=0
  started=$(date +%s)
  # Tab-separated "binary<TAB>name" per line; one process per line.
  tr '\t' '\n' <"$list" | tr '\n' '\0' |
    xargs -0 -n 2 -P "$jobs" bash -c 'run_one "$1" "'"$logdir"'" "$2"' _ || rc=$?
  echo "$label: $count test cases in $(($(date +%s) - started))s: $([ $rc -eq 0 ] && echo passed || echo FAILED)"
  [ $rc -eq 0 ] && rm -rf "$logdir"
  return $rc
}

# The "concurrency" suite is marked where the tests are, not listed here. So that a new test with
# threads cannot stay out of it unnoticed, every test case that starts a thread (std::thread,
# std::jthread, std::async) or an object that runs its own (AuditLog::open, HttpServer::start, a
# RequestQueue) must carry `doctest::test_suite("concurrency")` or sit between
# TEST_SUITE_BEGIN("concurrency") and TEST_SUITE_END().
check_concurrency_marks() {
  local unmarked
  unmarked=$(find "$root/tests/unit" "$root/tests/integration" -name '*.cc' -print0 | sort -z |
    xargs -0 awk '
      FNR == 1 { in_suite = 0; header = ""; marked = 0; name = "" }
      /TEST_SUITE_BEGIN\("concurrency"\)/ { in_suite = 1 }
      /TEST_SUITE_END/ { in_suite = 0 }
      /^TEST_CASE/ { header = ""; name = "" }
      /^TEST_CASE/ || (header != "" && name == "") {
        header = header $0
        if (header ~ /\{ *$/) {
          name = header
          marked = in_suite || header ~ /test_suite\("concurrency"\)/
        }
        next
      }
      name != "" && !marked && /std::(thread|jthread|async)([^a-z_]|$)|AuditLog::open|HttpServer::start|RequestQueue [a-z_]+\(/ {
        print FILENAME ":" FNR ": " name
        marked = 1  # once per test case
      }')
  if [ -n "$unmarked" ]; then
    echo "test cases that run threads but are not in the \"concurrency\" suite:" >&2
    echo "$unmarked" >&2
    return 1
  fi
}

for stage in "${stages[@]}"; do
  case $stage in
    asan)
      dir=${ASAN_BUILD_DIR:-$root/build-asan}
      t0=$(date +%s)
      configure_and_build "$dir" address,undefined
      echo "asan: built in $(($(date +%s) - t0))s"
      run_cases asan "$dir/tests/kekd_unit_tests" "$dir/tests/kekd_integration_tests"
      ;;
    tsan)
      check_concurrency_marks
      dir=${TSAN_BUILD_DIR:-$root/build-tsan}
      t0=$(date +%s)
      configure_and_build "$dir" thread
      echo "tsan: built in $(($(date +%s) - t0))s"
      run_cases tsan "$dir/tests/kekd_unit_tests" "$dir/tests/kekd_integration_tests" \
        -- --test-suite=concurrency
      ;;
    *)
      echo "usage: $0 [asan|tsan]..." >&2
      exit 2
      ;;
  esac
done
