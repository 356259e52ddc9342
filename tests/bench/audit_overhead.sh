#!/usr/bin/env bash
# What auditing costs: single 32-byte wraps over HTTP/1.1 keep-alive (wrk, 32 connections) with
# audit.mode = "durable" and with "off", alternating, in one run on one deployment. "off" exists
# only in builds configured with -DKEKD_BENCHMARK_AUDIT_OFF=ON, which this script makes in
# build-bench/ (never a build that serves anyone). Prints each run and the ratio durable / off.
#
#   tests/bench/audit_overhead.sh [seconds per run, default 15] [rounds, default 2]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
seconds=${1:-15}
rounds=${2:-2}
build="$root/build-bench"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKEKD_BUILD_TESTS=OFF \
  -DKEKD_BENCHMARK_AUDIT_OFF=ON >/dev/null
cmake --build "$build" --parallel "$(nproc)" --target kekd kekctl >/dev/null

work=$(mktemp -d /tmp/kekd-audit-bench.XXXXXX)
port=$((20000 + RANDOM % 20000))
pid=""
cleanup() {
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# A deployment with key "demo" and a client, made by dev.sh; then dev.sh's kekd is stopped.
KEKD_DEV_VAR="$work/var" KEKD_DEV_PORT=$port KEKD_DEV_BUILD="$build" \
  bash "$root/scripts/dev.sh" >"$work/dev.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  grep -q -- '--- end ---' "$work/dev.log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/dev.log" >&2; exit 1; }
  sleep 0.1
done
kill -TERM "$pid"
wait "$pid" || true
pid=""
eval "$(bash "$root/scripts/softhsm-token.sh" "$work/var/token" kekd)"  # SOFTHSM2_CONF
KEKD_BENCH_TOKEN=$(cat "$work/var/demo-client.token")
export KEKD_BENCH_TOKEN

run_mode() {
  local mode=$1 config="$work/var/kekd-$1.toml"
  { sed "s/^\[server\]\$/[server]\nworkers = ${KEKD_BENCH_WORKERS:-0}/" "$work/var/kekd.toml"
    printf '\n[audit]\nmode = "%s"\n' "$mode"; } >"$config"
  "$build/kekd" serve --config "$config" >>"$work/kekd.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/v1/ready" >/dev/null 2>&1 && break
    sleep 0.1
  done
  # A short warm-up, then the measured run.
  wrk -t2 -c32 -d2s -s "$root/tests/bench/wrap.lua" "http://127.0.0.1:$port" >/dev/null
  local line
  line=$(wrk -t2 -c32 -d"${seconds}s" -s "$root/tests/bench/wrap.lua" "http://127.0.0.1:$port" |
    grep '^RESULT')
  kill -TERM "$pid"
  wait "$pid" || true
  pid=""
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
