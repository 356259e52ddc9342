#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang 14 (ASan + UBSan) and runs each for a
# while, starting from its seed corpus in tests/fuzz/corpus/<target>/ (see tests/fuzz/README.md).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     default: 60 seconds, every target
#
#   FUZZ_BUILD_DIR  build directory (default: build-fuzz)
#   FUZZ_WORK       scratch directory for the runs (default: $FUZZ_BUILD_DIR/runs): each target
#                   fuzzes a copy of its corpus there, so tests/fuzz/corpus is never written
#   FUZZ_PARALLEL   how many targets run at once (default: 1)
#   FUZZ_BUILD=0    run the targets already built, without configuring or building
#   FUZZ_MERGE=1    afterwards, merge the inputs that add coverage into tests/fuzz/corpus
#                   (libFuzzer -merge=1; review the size of what it adds before committing)
#
# Exits non-zero if any target finds a crash, a leak, undefined behaviour, a timeout or a broken
# property; the input is kept under $FUZZ_WORK/<target>/ and the command that replays it is
# printed. Prints one line per target: executions, seconds, corpus size, result.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
all_targets=(ciphertext sealed_file statement transcript sigv4 json_request config)

seconds=60
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
  seconds=$1
  shift
fi
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
  [[ " ${all_targets[*]} " == *" $t "* ]] || {
    echo "fuzz: unknown target '$t' (targets: ${all_targets[*]})" >&2
    exit 2
  }
done

build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
work=${FUZZ_WORK:-$build/runs}
parallel=${FUZZ_PARALLEL:-1}

if [[ ${FUZZ_BUILD:-1} != 0 ]]; then
  command -v clang++-14 >/dev/null || bash "$root/scripts/install-deps.sh"

  # OSS-Fuzz's optimisation level: fast enough to fuzz, cheap to build, line numbers in reports.
  launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  CC=clang-14 CXX=clang++-14 cmake -S "$root" -B "$build" -G Ninja -DKEKD_FUZZ=ON \
    -DKEKD_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only" "${launcher[@]}" >/dev/null
  cmake --build "$build" --parallel "$(nproc)" --target "${targets[@]/%/_fuzz}"
fi

# Runs one target; writes its summary line to $work/<target>/summary.
run_target() {
  local t=$1 dir=$work/$1
  rm -rf "$dir"
  mkdir -p "$dir/corpus" "$dir/tmp"
  cp "$root/tests/fuzz/corpus/$t/"* "$dir/corpus/"
  local status=0 started=$SECONDS
  # -timeout: one input taking 10 s is a finding (a hang). TMPDIR: the json_request target's
  # store lives there. halt_on_error etc.: every sanitizer report stops the run.
  TMPDIR=$dir/tmp \
    ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
    "$build/tests/fuzz/${t}_fuzz" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$dir/" "$dir/corpus" >"$dir/log" 2>&1 || status=$?
  local execs corpus result
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
  corpus=$(find "$dir/corpus" -type f | wc -l)
  if [[ $status -eq 0 ]]; then
    result=ok
  else
    result="FINDING (exit $status)"
  fi
  printf '%-13s %10s execs %5s s  corpus %5s  %s\n' "$t" "${execs:-?}" \
    "$((SECONDS - started))" "$corpus" "$result" >"$dir/summary"
  return "$status"
}

mkdir -p "$work"
pids=()
names=()
failed=()
wait_one() {
  local pid=${pids[0]} name=${names[0]}
  pids=("${pids[@]:1}")
  names=("${names[@]:1}")
  wait "$pid" || failed+=("$name")
  cat "$work/$name/summary"
}
for t in "${targets[@]}"; do
  run_target "$t" &
  pids+=($!)
  names+=("$t")
  [[ ${#pids[@]} -lt $parallel ]] || wait_one
done
while [[ ${#pids[@]} -gt 0 ]]; do wait_one; done

for t in "${failed[@]+"${failed[@]}"}"; do
  echo
  echo "fuzz: $t found a problem. The end of its log ($work/$t/log):"
  tail -n 40 "$work/$t/log"
  for artifact in "$work/$t"/crash-* "$work/$t"/leak-* "$work/$t"/timeout-* "$work/$t"/oom-*; do
    [[ -e $artifact ]] || continue
    echo "fuzz: reproduce with: $build/tests/fuzz/${t}_fuzz $artifact"
    echo "fuzz: once fixed, keep it: cp $artifact tests/fuzz/corpus/$t/regression-<what>"
  done
done

if [[ ${FUZZ_MERGE:-0} == 1 ]]; then
  for t in "${targets[@]}"; do
    before=$(find "$root/tests/fuzz/corpus/$t" -type f | wc -l)
    "$build/tests/fuzz/${t}_fuzz" -merge=1 "$root/tests/fuzz/corpus/$t" "$work/$t/corpus" \
      >"$work/$t/merge.log" 2>&1
    after=$(find "$root/tests/fuzz/corpus/$t" -type f | wc -l)
    echo "fuzz: merged $((after - before)) inputs into tests/fuzz/corpus/$t"
  done
fi

[[ ${#failed[@]} -eq 0 ]] || exit 1
echo "fuzz: ${#targets[@]} targets, ${seconds} s each, no findings"
