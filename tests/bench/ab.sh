#!/usr/bin/env bash
# Two kekd binaries, one deployment: alternates them under the same wrk load, so that a change can
# be compared within one run instead of across runs on a noisy machine (docs/performance.md).
#
#   tests/bench/ab.sh DIR_A DIR_B OP CONNECTIONS SECONDS ROUNDS [BATCH]
#
# DIR_A and DIR_B each hold a `kekd` (e.g. copies of build-bench/kekd before and after a change).
# OP is wrap, unwrap or datakey; BATCH items per request (default 1). The deployment is made with
# build-bench's kekd and kekctl (scripts/bench.sh builds them); SESSIONS sets hsm.sessions
# (default 2). A_SET and B_SET add settings for one side only, as bench_config takes them (e.g.
# B_SET="server.io_threads=1" with DIR_A = DIR_B compares two settings of one binary). Prints one
# line per round and side: requests/s, p50 and p99 in ms, errors, and kekd's CPU time per
# operation in µs. AB_SYSCALLS=1 adds kekd's system calls and context switches per operation,
# counted by `perf stat` (needs perf, and root or kernel.perf_event_paranoid <= -1 for the
# tracepoint): counts move far less with the machine's load than times do, though futex and
# epoll_wait still follow the contention (docs/performance.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/bench/lib.sh
source "$root/tests/bench/lib.sh"
[ $# -ge 6 ] || { sed -n 5,10p "$0" >&2; exit 2; }
# shellcheck disable=SC2034 # A and B are read as ${!side}
A=$1 B=$2 op=$3 conns=$4 secs=$5 rounds=$6 batch=${7:-1}
build=$root/build-bench
work=$(mktemp -d /tmp/kekd-ab.XXXXXX)
port=$((20000 + RANDOM % 20000))
cleanup() {
  kekd_stop
  rm -rf "$work"
}
trap cleanup EXIT

bench_deploy "$work" "$port" "$build"  # exports SOFTHSM2_CONF, KEKD_BENCH_TOKEN
var=$work/var
bench_config "$var/kekd.toml" "$var/bench.toml" hsm.sessions="${SESSIONS:-2}" server.workers=0
# shellcheck disable=SC2086 # A_SET and B_SET are lists of settings
bench_config "$var/bench.toml" "$var/bench-A.toml" ${A_SET:-}
# shellcheck disable=SC2086
bench_config "$var/bench.toml" "$var/bench-B.toml" ${B_SET:-}
url="http://127.0.0.1:$port"

# Ciphertexts for unwrap, as scripts/bench.sh makes them: 1000 data keys of 32 bytes.
kekd_start "$build" "$var/bench.toml" "$port" "$work/kekd.log"
jq -nc '{items: [range(1000) | {bytes: 32, plaintext: false}]}' |
  curl -fsS -H "Authorization: Bearer $KEKD_BENCH_TOKEN" -d @- "$url/v1/keys/demo/datakey" |
  jq -r '.items[].ciphertext' >"$work/ciphertexts.txt"
kekd_stop
export BENCH_CIPHERTEXTS="$work/ciphertexts.txt"

# kekd's CPU time (user + system, all threads) in clock ticks, for the CPU per operation: what
# a change costs kekd apart from the time it waited for a CPU. It moves with the machine's load
# too (contended locks cost more), so compare it within a run, like the throughput.
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

for round in $(seq 1 "$rounds"); do
  for side in A B; do
    kekd_start "${!side}" "$var/bench-$side.toml" "$port" "$work/kekd-$side.log"
    BENCH_OP=$op BENCH_BATCH=$batch wrk -t2 -c"$conns" -d2s -s "$root/tests/bench/kekd.lua" \
      "$url" >/dev/null
    perf_pid=""
    if [ "${AB_SYSCALLS:-0}" = 1 ]; then
      perf stat -x, -e raw_syscalls:sys_enter,context-switches -p "$kekd_pid" \
        -o "$work/perf-stat.csv" &
      perf_pid=$!
      sleep 0.3  # attached before the load starts; an idle kekd makes next to no calls
    fi
    ticks_before=$(cpu_ticks "$kekd_pid")
    result=$(BENCH_OP=$op BENCH_BATCH=$batch wrk -t2 -c"$conns" -d"${secs}s" \
      -s "$root/tests/bench/kekd.lua" "$url" | sed -n 's/^RESULT //p')
    ticks=$(($(cpu_ticks "$kekd_pid") - ticks_before))
    counts='{}'
    if [ -n "$perf_pid" ]; then
      kill -INT "$perf_pid"
      wait "$perf_pid" || true
      # perf's CSV: count,unit,event,...; one JSON object of event -> count.
      counts=$(awk -F, '$1 ~ /^[0-9]+$/ { printf "%s\"%s\": %s", n++ ? ", " : "{", $3, $1 }
        END { print n ? "}" : "{}" }' "$work/perf-stat.csv")
    fi
    kekd_stop
    echo "$round $side $(jq -c --argjson ticks "$ticks" --argjson hz "$hz" --argjson secs "$secs" \
      --argjson counts "$counts" '(.ops_per_sec * $secs) as $ops
      | {rps, ops_per_sec, p50_ms, p99_ms, non2xx, item_errors,
         cpu_us_per_op: ($ticks / $hz * 1e6 / $ops | floor)}
      + if $counts["raw_syscalls:sys_enter"] then
          {syscalls_per_op: ($counts["raw_syscalls:sys_enter"] / $ops * 100 | round / 100),
           context_switches_per_op: ($counts["context-switches"] / $ops * 100 | round / 100)}
        else {} end' <<<"$result")"
  done
done
