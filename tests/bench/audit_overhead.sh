#!/usr/bin/env bash
# What auditing costs: single 32-byte wraps over HTTP/1.1 keep-alive (wrk, 32 connections) with
# audit.mode = "durable" and with "off", alternating, in one run on one deployment. "off" exists
# only in builds configured with -DKEKD_BENCHMARK_AUDIT_OFF=ON, which this script makes in
# build-bench/ (never a build that serves anyone). Prints each run and the ratio durable / off.
# The deployment, config and start/stop helpers are shared with scripts/bench.sh (lib.sh).
#
#   tests/bench/audit_overhead.sh [seconds per run, default 15] [rounds, default 2]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/bench/lib.sh
source "$root/tests/bench/lib.sh"
seconds=${1:-15}
rounds=${2:-2}
build="${KEKD_BENCH_BUILD:-$root/build-bench}"  # its own build dir if you like
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKEKD_BUILD_TESTS=OFF \
  -DKEKD_BENCHMARK_AUDIT_OFF=ON >/dev/null
cmake --build "$build" --parallel "$(nproc)" --target kekd kekctl >/dev/null

work=$(mktemp -d /tmp/kekd-audit-bench.XXXXXX)
port=$((20000 + RANDOM % 20000))
cleanup() {
  kekd_stop
  rm -rf "$work"
}
trap cleanup EXIT

# A deployment with key "demo" and a client, made by dev.sh; then dev.sh's kekd is stopped.
bench_deploy "$work" "$port" "$build"  # exports SOFTHSM2_CONF, KEKD_BENCH_TOKEN

run_mode() {
  local mode=$1 config="$work/var/kekd-$1.toml"
  bench_config "$work/var/kekd.toml" "$config" server.workers="${KEKD_BENCH_WORKERS:-0}" \
    audit.mode="\"$mode\""
  kekd_start "$build" "$config" "$port" "$work/kekd.log"
  # A short warm-up, then the measured run.
  wrk -t2 -c32 -d2s -s "$root/tests/bench/wrap.lua" "http://127.0.0.1:$port" >/dev/null
  local line
  line=$(wrk -t2 -c32 -d"${seconds}s" -s "$root/tests/bench/wrap.lua" "http://127.0.0.1:$port" |
    grep '^RESULT')
  kekd_stop
  echo "$mode $line"
}

results=()
for _ in $(seq 1 "$rounds"); do
  for mode in durable off; do
    line=$(run_mode "$mode")
    echo "$line"
    results+=("$line")
  done
done
printf '%s\n' "${results[@]}" | awk '
  { split($3, a, "="); rps[$1] += a[2]; n[$1]++ }
  END {
    d = rps["durable"] / n["durable"]; o = rps["off"] / n["off"]
    printf "mean wraps/s: audit durable %.0f, audit off %.0f; durable / off = %.1f%%\n", d, o, 100 * d / o
  }'
