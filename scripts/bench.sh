#!/usr/bin/env bash
# The benchmark of DESIGN §10 and docs/performance.md, in one run on one machine:
#
#   1. builds kekd in release mode (build-bench/, with the test programs: the in-process ceiling,
#      the PKCS#11 shim, the populate tool),
#   2. makes a fresh deployment (scripts/dev.sh: a new SoftHSM token, key "demo", a client),
#   3. for wrap, unwrap and datakey of 32-byte keys, in BENCH_RUNS rounds: the in-process ceiling
#      (kekd's PKCS#11 calls in a C++ loop, 1 and 2 threads), then kekd over HTTP/1.1 keep-alive
#      (wrk) with single items (1, 8, 32 and 128 connections in the first round, 32 in the
#      others) and with batches of 100,
#   4. in BENCH_RUNS rounds, kekd through the PKCS#11 shim (2 ms per C_WrapKey / C_UnwrapKey, a
#      network HSM) with 16 sessions at 64 connections, against the 16 / 2 ms = 8000 ops/s model,
#      while a second wrk probes GET /v1/health at a steady pace,
#   5. start-up to ready, before and after adding 1000 KEK versions to the deployment,
#   6. single wraps at 32 connections for a minute on one kekd, with those 1000 versions in the
#      token: memory over time, and the pauses of re-initialising SoftHSM (docs/operations.md,
#      "SoftHSM's memory"), which the other runs, each on a fresh kekd, are too short to meet,
#
# and prints a table (also written as JSON, path printed at the end) with requests and operations
# per second, p50/p99 latency, kekd's peak RSS, errors, and each throughput as a ratio of the
# ceiling measured in the same run. Every column is explained in docs/performance.md.
#
#   scripts/bench.sh
#
# Environment (defaults in brackets):
#   BENCH_SECONDS [10]              seconds per measured run (wrk and the ceiling)
#   BENCH_RUNS [3]                  rounds per operation: each measures the ceiling, the single
#                                   items at BENCH_REPEAT_CONNECTIONS and the batch again (the
#                                   first round also the other connection counts); the shim's
#                                   rounds measure its ceiling, wraps and unwraps. Each row is
#                                   the run with the median ops/s, with every run beside it.
#   BENCH_REPEAT_CONNECTIONS [32]   the single-item connection count measured in every round
#   BENCH_WARMUP [2]                seconds of wrk before each measured run (not counted)
#   BENCH_OPS ["wrap unwrap datakey"]
#   BENCH_CONNECTIONS ["1 8 32 128"]  connections for single items
#   BENCH_BATCH [100]               items per batch request
#   BENCH_BATCH_CONNECTIONS [8]     connections for batches
#   BENCH_SESSIONS [2]              hsm.sessions of kekd on SoftHSM (workers = it); 2 is what
#                                   docs/operations.md advises for a local software token
#   BENCH_WORKER_CPUS [last]        server.worker_cpus of kekd on SoftHSM: "last" = the last CPU
#                                   this shell may use, "none" = unset, or a list like "0,1"
#                                   (docs/operations.md, "Confining the workers to one CPU");
#                                   the shim's kekd is never confined (a network HSM)
#   BENCH_SHIM_SESSIONS [16]  BENCH_SHIM_CONNECTIONS [64]  BENCH_SHIM_DELAY_US [2000]
#   BENCH_HEALTH_CONNECTIONS [4]    the concurrent health wrk of the shim runs
#   BENCH_HEALTH_DELAY_MS [5]       its pause between an answer and the next request on a
#                                   connection (a paced probe, < 800 requests/s); 0 = a flood
#   BENCH_POPULATE_KEYS [100]  BENCH_POPULATE_VERSIONS [10]  (1000 KEK versions)
#   BENCH_STARTUP_RUNS [5]          start-ups timed before and after populating
#   BENCH_SUSTAINED_SECONDS [60]    the length of the one sustained run (6.)
#   BENCH_SKIP ["" ]                any of: ceiling single batch shim startup sustained
#   BENCH_PERF [0]                  1: one more wrap run at 32 connections under `perf record`,
#                                   its report written next to the JSON
#   BENCH_BUILD [build-bench]  BENCH_OUT [BENCH_BUILD/bench-<sha>[-dirty].json]
#   BENCH_KEEP [0]                  1: keep the work directory (deployment, logs)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tests/bench/lib.sh
source "$root/tests/bench/lib.sh"

seconds=${BENCH_SECONDS:-10}
warmup=${BENCH_WARMUP:-2}
ops=${BENCH_OPS:-wrap unwrap datakey}
connections=${BENCH_CONNECTIONS:-1 8 32 128}
batch=${BENCH_BATCH:-100}
batch_connections=${BENCH_BATCH_CONNECTIONS:-8}
sessions=${BENCH_SESSIONS:-2}
worker_cpus=${BENCH_WORKER_CPUS:-last}
if [ "$worker_cpus" = last ]; then
  worker_cpus=$(awk '/^Cpus_allowed_list:/ { n = split($2, a, /[,-]/); print a[n] }' /proc/self/status)
  worker_cpus=${worker_cpus:-none}
fi
if ! [[ $worker_cpus =~ ^[0-9]+(,[0-9]+)*$ || $worker_cpus == none ]]; then
  echo "BENCH_WORKER_CPUS: want last, none or a list of CPUs like 0,1 (got '$worker_cpus')" >&2
  exit 2
fi
shim_sessions=${BENCH_SHIM_SESSIONS:-16}
shim_connections=${BENCH_SHIM_CONNECTIONS:-64}
shim_delay_us=${BENCH_SHIM_DELAY_US:-2000}
health_connections=${BENCH_HEALTH_CONNECTIONS:-4}
health_delay_ms=${BENCH_HEALTH_DELAY_MS:-5}
populate_keys=${BENCH_POPULATE_KEYS:-100}
populate_versions=${BENCH_POPULATE_VERSIONS:-10}
startup_runs=${BENCH_STARTUP_RUNS:-5}
sustained_seconds=${BENCH_SUSTAINED_SECONDS:-60}
runs=${BENCH_RUNS:-3}
repeat_connections=${BENCH_REPEAT_CONNECTIONS:-32}
skip=" ${BENCH_SKIP:-} "
build=${BENCH_BUILD:-$root/build-bench}
wrk_timeout=5s

for tool in wrk curl jq cmake ninja softhsm2-util; do
  command -v "$tool" >/dev/null || { echo "bench.sh needs $tool (scripts/install-deps.sh; wrk: apt-get install wrk)" >&2; exit 1; }
done

sha=$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
dirty=false
if [ -n "$(git -C "$root" --no-optional-locks status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  dirty=true
fi
out=${BENCH_OUT:-$build/bench-$sha$([ "$dirty" = true ] && echo -dirty || true).json}

say() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

say "building $build (Release)"
bench_build "$build" kekd kekctl kekd_hsm_ceiling kekd_pkcs11_shim kekd_bench_populate
ceiling_bin="$build/tests/kekd_hsm_ceiling"
shim="$build/tests/libkekd_pkcs11_shim.so"
populate_bin="$build/tests/kekd_bench_populate"

work=$(mktemp -d /tmp/kekd-bench.XXXXXX)
port=$((20000 + RANDOM % 20000))
health_pid=""
cleanup() {
  [ -n "$health_pid" ] && kill -TERM "$health_pid" 2>/dev/null
  kekd_stop
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "work directory kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

say "a fresh deployment in $work (scripts/dev.sh, port $port)"
bench_deploy "$work" "$port" "$build"
var="$work/var"
rows="$work/rows.jsonl"  # one JSON object per measurement
: >"$rows"
load_start=$(loadavg)
started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)

worker_cpus_setting=()
if [ "$worker_cpus" != none ]; then worker_cpus_setting=(server.worker_cpus="[$worker_cpus]"); fi
bench_config "$var/kekd.toml" "$var/bench.toml" hsm.sessions="$sessions" server.workers=0 \
  "${worker_cpus_setting[@]}"
bench_config "$var/kekd.toml" "$var/bench-shim.toml" hsm.sessions="$shim_sessions" \
  server.workers=0 hsm.module="\"$shim\""
url="http://127.0.0.1:$port"

# Ciphertexts for the unwrap runs: 1000 data keys of 32 bytes, empty context.
kekd_start "$build" "$var/bench.toml" "$port" "$work/kekd.log"
jq -nc '{items: [range(1000) | {bytes: 32, plaintext: false}]}' |
  curl -fsS -H "Authorization: Bearer $KEKD_BENCH_TOKEN" -d @- "$url/v1/keys/demo/datakey" |
  jq -r '.items[].ciphertext' >"$work/ciphertexts.txt"
kekd_stop
export BENCH_CIPHERTEXTS="$work/ciphertexts.txt"
[ "$(wc -l <"$work/ciphertexts.txt")" -eq 1000 ] || { echo "could not make ciphertexts" >&2; exit 1; }

# wrk with the RESULT line of tests/bench/kekd.lua; prints that JSON.
run_wrk() {  # op batch connections seconds
  local threads=$(($3 < 2 ? 1 : 2)) result
  result=$(BENCH_OP=$1 BENCH_BATCH=$2 wrk -t"$threads" -c"$3" -d"$4s" --timeout "$wrk_timeout" \
    -s "$root/tests/bench/kekd.lua" "$url" | sed -n 's/^RESULT //p')
  [ -n "$result" ] || { echo "wrk printed no RESULT ($1, batch $2, $3 connections)" >&2; return 1; }
  echo "$result"
}

# One measured wrk run on a freshly started kekd: warm-up, run, VmHWM, stop. Appends a row to
# $http_runs_file, tagged with the round; http_median makes the table's rows from them.
http_runs_file="$work/http-runs.jsonl"
: >"$http_runs_file"
measure_http() {  # scenario config op batch connections round [VAR=VALUE for kekd...]
  local scenario=$1 config=$2 op=$3 n=$4 c=$5 run=$6 result hwm health=null reinit=0
  local secs=${MEASURE_SECONDS:-$seconds}
  shift 6
  kekd_start "$build" "$config" "$port" "$work/kekd.log" "$@"
  if [ "$warmup" != 0 ]; then run_wrk "$op" "$n" "$c" "$warmup" >/dev/null; fi
  if [ "$scenario" = shim ]; then
    BENCH_OP=health BENCH_DELAY_MS=$health_delay_ms wrk -t1 -c"$health_connections" \
      -d"${secs}s" --timeout "$wrk_timeout" \
      -s "$root/tests/bench/kekd.lua" "$url" >"$work/health.out" &
    health_pid=$!
  fi
  result=$(run_wrk "$op" "$n" "$c" "$secs")
  if [ -n "$health_pid" ]; then
    wait "$health_pid"
    health_pid=""
    health=$(sed -n 's/^RESULT //p' "$work/health.out")
    [ -n "$health" ] || health=null
  fi
  hwm=$(kekd_hwm_kib)
  # How often kekd re-initialised the module meanwhile (hsm.reinitialize_after).
  reinit=$(curl -fsS "$url/metrics" | awk '$1 == "kekd_hsm_reinitializations_total" { print $2 }')
  kekd_stop
  jq -nc --arg scenario "$scenario" --argjson c "$c" --argjson w "$result" --argjson hwm "$hwm" \
    --argjson reinit "${reinit:-0}" \
    --argjson health "$health" --argjson hc "$health_connections" --argjson run "$run" \
    --argjson sessions "$(sed -n 's/^sessions = //p' "$config")" \
    '{scenario: $scenario, run: $run, op: $w.op, connections: $c, batch: $w.batch, sessions: $sessions,
      requests: $w.requests, seconds: $w.seconds, rps: $w.rps, ops_per_sec: $w.ops_per_sec,
      p50_ms: $w.p50_ms, p90_ms: $w.p90_ms, p99_ms: $w.p99_ms, max_ms: $w.max_ms,
      non2xx: $w.non2xx, item_errors: $w.item_errors, socket_errors: $w.socket_errors,
      socket_error_detail: {connect: $w.connect_errors, read: $w.read_errors,
                            write: $w.write_errors, timeout: $w.timeouts},
      peak_rss_kib: $hwm, reinitializations: $reinit}
     + (if $health == null then {} else {health: {connections: $hc,
          rps: $health.rps, p50_ms: $health.p50_ms, p99_ms: $health.p99_ms,
          max_ms: $health.max_ms, non2xx: $health.non2xx,
          socket_errors: $health.socket_errors}} end)' >>"$http_runs_file"
  say "$(tail -1 "$http_runs_file" | jq -r '"  \(.scenario) \(.op) c=\(.connections) batch=\(.batch): \(.ops_per_sec) ops/s, p99 \(.p99_ms) ms"')"
}

# Every measurement below is repeated in $runs rounds, and the rounds of one operation alternate
# the ceiling with kekd: ceiling, kekd's rows, ceiling, kekd's rows, ... A single 10-s run on a
# shared 2-CPU VM can land 40 % off its neighbours (docs/performance.md, "Reading the table"), and
# one run of the ceiling was the denominator of every ratio of its operation; alternating lets the
# machine's drift over those minutes reach both sides alike.

# The in-process ceiling, one run: one JSON row per (op, threads) in $ceiling_runs_file, tagged
# with the round. ceiling_median then writes one row per (op, threads) to $rows: the median of
# the runs, with every run's ops/s beside it.
ceiling_runs_file="$work/ceiling-runs.jsonl"
: >"$ceiling_runs_file"
measure_ceiling() {  # scenario module threads ops round [VAR=VALUE for the program...]
  local scenario=$1 module=$2 threads=$3 list=$4 run=$5 before
  shift 5
  before=$(wc -l <"$ceiling_runs_file")
  # The environment kekd runs in (hsm-config/kekd.env): both sides get the same allocator settings.
  (set -a && . "$root/hsm-config/kekd.env" && exec env "$@" "$ceiling_bin" --module "$module" \
    --pin-file "$var/token/pin" --seconds "$seconds" --threads "$threads" --ops "$list") |
    jq -c --arg scenario "$scenario" --argjson run "$run" '{scenario: $scenario, run: $run} + .' \
      >>"$ceiling_runs_file"
  say "$(tail -n +"$((before + 1))" "$ceiling_runs_file" |
    jq -rs 'map("\(.op) \(.threads) thread(s): \(.ops_per_sec) ops/s") | "  " + join(", ")')"
}
ceiling_median() {  # scenario: appends the medians of that scenario's runs to $rows
  jq -sc --arg scenario "$1" '
    map(select(.scenario == $scenario)) | group_by([.op, .threads])[]
    | (map(.ops_per_sec) | sort) as $s
    | {scenario: $scenario, op: .[0].op, threads: .[0].threads,
       ops_per_sec: (if $s | length % 2 == 1 then $s[$s | length / 2 | floor]
                     else ($s[$s | length / 2 - 1] + $s[$s | length / 2]) / 2 end),
       runs: map(.ops_per_sec), seconds: .[0].seconds}' "$ceiling_runs_file" >>"$rows"
}
# kekd's rows: each (scenario, op, connections, batch) becomes the run with the median ops/s (the
# lower middle one for an even count), in the order first measured, with every run's ops/s and
# p99 beside it. Errors are the sum over the runs and the peak RSS the highest: a target on
# those holds for every run, not for the median one.
http_median() {
  jq -sc '
    def key: [.scenario, .op, .connections, .batch];
    def total(f): map(f // 0) | add;
    . as $all
    | (reduce $all[] as $r ([]; if any(.[]; . == ($r | key)) then . else . + [$r | key] end)) as $keys
    | $keys[] as $k
    | [$all[] | select(key == $k)] as $g
    | ($g | sort_by(.ops_per_sec)) as $sorted
    | $sorted[($sorted | length - 1) / 2 | floor]
    | del(.run)
    | . + {runs: ($g | map(.ops_per_sec)), p99_runs: ($g | map(.p99_ms)),
           peak_rss_kib: ($g | map(.peak_rss_kib) | max),
           non2xx: ($g | total(.non2xx)), item_errors: ($g | total(.item_errors)),
           socket_errors: ($g | total(.socket_errors))}
    | if .health then
        .health += {p99_runs: ($g | map(.health.p99_ms)), non2xx: ($g | total(.health.non2xx)),
                    socket_errors: ($g | total(.health.socket_errors))}
      else . end' "$http_runs_file" >>"$rows"
}

for op in $ops; do
  for run in $(seq 1 "$runs"); do
    if [[ $skip != *" ceiling "* ]]; then
      say "ceiling: $op, 1 and 2 threads, ${seconds}s each (round $run of $runs)"
      measure_ceiling ceiling /usr/lib/softhsm/libsofthsm2.so 1,2 "$op" "$run"
    fi
    if [[ $skip != *" single "* ]]; then
      for c in $connections; do
        # The first round measures every connection count; the others the targets' count again.
        if [ "$run" = 1 ] || [ "$c" = "$repeat_connections" ]; then
          say "kekd: $op, single items, $c connections (round $run)"
          measure_http single "$var/bench.toml" "$op" 1 "$c" "$run"
        fi
      done
    fi
    if [[ $skip != *" batch "* ]]; then
      say "kekd: $op, batches of $batch, $batch_connections connections (round $run)"
      measure_http batch "$var/bench.toml" "$op" "$batch" "$batch_connections" "$run"
    fi
  done
done
ceiling_median ceiling

shim_env=(KEKD_SHIM_MODULE=/usr/lib/softhsm/libsofthsm2.so
  "KEKD_SHIM_DELAY=C_WrapKey=$shim_delay_us,C_UnwrapKey=$shim_delay_us")
if [[ $skip != *" shim "* ]]; then
  for run in $(seq 1 "$runs"); do
    say "shim ceiling: wrap and unwrap on $shim_sessions threads, ${shim_delay_us} us per call (round $run of $runs)"
    measure_ceiling shim-ceiling "$shim" "$shim_sessions" wrap,unwrap "$run" "${shim_env[@]}"
    for op in wrap unwrap; do
      say "kekd through the shim: $op, $shim_connections connections, $shim_sessions sessions (round $run)"
      measure_http shim "$var/bench-shim.toml" "$op" 1 "$shim_connections" "$run" "${shim_env[@]}"
    done
  done
  ceiling_median shim-ceiling
fi

if [ "${BENCH_PERF:-0}" = 1 ] && command -v perf >/dev/null; then
  say "perf: wrap, 32 connections, ${seconds}s (not part of the table)"
  kekd_start "$build" "$var/bench.toml" "$port" "$work/kekd.log"
  run_wrk wrap 1 32 "$warmup" >/dev/null
  run_wrk wrap 1 32 "$seconds" >"$work/perf-wrk.json" &
  perf_wrk=$!
  perf record -F 499 -g -p "$kekd_pid" -o "$work/perf.data" -- sleep "$((seconds > 2 ? seconds - 1 : 1))" \
    >/dev/null 2>&1 || true
  wait "$perf_wrk"
  kekd_stop
  perf_out="${out%.json}.perf.txt"
  { echo "# wrap, 32 connections: $(cat "$work/perf-wrk.json")"
    echo "# by shared object"
    perf report -i "$work/perf.data" --no-children -g none --sort dso 2>/dev/null | grep '%'
    echo "# by thread"
    perf report -i "$work/perf.data" --no-children -g none --sort pid 2>/dev/null | grep '%'
    echo "# by symbol"
    perf report -i "$work/perf.data" --no-children -g none --sort dso,sym 2>/dev/null |
      grep '%' | head -60; } >"$perf_out" || true  # (head closes the pipe early: SIGPIPE)
fi

if [[ $skip != *" startup "* ]]; then
  time_startups() {  # phase kek-versions
    local times=()
    for _ in $(seq 1 "$startup_runs"); do
      kekd_start "$build" "$var/bench.toml" "$port" "$work/kekd.log"
      times+=("$kekd_ready_s")
      kekd_stop
    done
    printf '%s\n' "${times[@]}" | jq -sc --arg phase "$1" --argjson versions "$2" \
      '{scenario: "startup", phase: $phase, kek_versions: $versions, runs: .,
        median_s: (sort | if length % 2 == 1 then .[length / 2 | floor]
                          else (.[length / 2 - 1] + .[length / 2]) / 2 end), max_s: max}' >>"$rows"
  }
  kek_versions() {  # prints how many key versions kekd lists (the admin sees every key)
    kekd_start "$build" "$var/bench.toml" "$port" "$work/kekd.log"
    curl -fsS -H "Authorization: Bearer $(cat "$var/admin.token")" "$url/v1/keys" |
      jq '[.keys[].versions | length] | add' >"$work/versions.txt"
    kekd_stop
    cat "$work/versions.txt"
  }
  before=$(kek_versions)  # (a subshell, but it stops its own kekd)
  say "start-up to ready, $before KEK version(s), $startup_runs runs"
  time_startups before-populate "$before"
  say "adding $((populate_keys * populate_versions)) KEK versions ($populate_keys keys x $populate_versions)"
  "$populate_bin" --config "$var/bench.toml" --keys "$populate_keys" --versions "$populate_versions" \
    >"$work/populate.json"
  after=$(kek_versions)
  say "start-up to ready, $after KEK versions, $startup_runs runs"
  time_startups after-populate "$after"
  jq -c '{scenario: "populate"} + .' "$work/populate.json" >>"$rows"
fi

if [[ $skip != *" sustained "* ]]; then
  say "kekd: wrap, single items, $repeat_connections connections for ${sustained_seconds}s on one kekd (memory over time)"
  MEASURE_SECONDS=$sustained_seconds measure_http sustained "$var/bench.toml" wrap 1 \
    "$repeat_connections" 1
fi
http_median

load_end=$(loadavg)

# ---- the report ------------------------------------------------------------------------------
jq -s \
  --arg sha "$sha" --argjson dirty "$dirty" --arg started "$started_at" \
  --arg finished "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  --arg load_start "$load_start" --arg load_end "$load_end" \
  --argjson nproc "$(nproc)" --arg cpu "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)" \
  --argjson mem_kib "$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)" --arg kernel "$(uname -r)" \
  --arg softhsm "$(softhsm2-util --version)" --arg wrk "$(wrk -v 2>&1 | head -1 | cut -d' ' -f2)" \
  --argjson seconds "$seconds" --argjson warmup "$warmup" --argjson sessions "$sessions" \
  --arg worker_cpus "$worker_cpus" \
  --argjson runs "$runs" --argjson hc0 "$health_connections" \
  --argjson health_delay_ms "$health_delay_ms" \
  --argjson shim_sessions "$shim_sessions" --argjson shim_delay_us "$shim_delay_us" '
  . as $rows
  | def best($s; $op): [$rows[] | select(.scenario == $s and .op == $op) | .ops_per_sec] | max;
    ($shim_sessions * 1000000 / $shim_delay_us) as $model
  | [ $rows[]
      | if .scenario == "single" or .scenario == "batch" or .scenario == "sustained" then
          . + {ceiling_ops_per_sec: best("ceiling"; .op)}
          | . + {ratio: (if .ceiling_ops_per_sec then .ops_per_sec / .ceiling_ops_per_sec else null end)}
        elif .scenario == "shim" then
          . + {model_ops_per_sec: $model, ratio: (.ops_per_sec / $model),
               ceiling_ops_per_sec: best("shim-ceiling"; .op)}
          | . + {ceiling_ratio: (if .ceiling_ops_per_sec then .ops_per_sec / .ceiling_ops_per_sec else null end)}
        else . end ] as $rows
  | def http: $rows[] | select(.scenario == "single" or .scenario == "batch" or .scenario == "shim"
                               or .scenario == "sustained");
    def target($name; $measured; $ok): {target: $name, measured: $measured, met: $ok};
  { git_sha: $sha, dirty: $dirty, started: $started, finished: $finished,
    machine: {nproc: $nproc, cpu: $cpu, mem_mib: ($mem_kib / 1024 | floor), kernel: $kernel,
              loadavg_start: $load_start, loadavg_end: $load_end},
    software: {softhsm: $softhsm, wrk: $wrk},
    settings: {seconds: $seconds, warmup: $warmup, sessions: $sessions, worker_cpus: $worker_cpus,
               runs: $runs,
               health_connections: $hc0, health_delay_ms: $health_delay_ms,
               shim_sessions: $shim_sessions, shim_delay_us: $shim_delay_us,
               shim_model_ops_per_sec: $model},
    rows: $rows,
    targets: ([
      ($rows[] | select(.scenario == "single" and .connections == 32) |
        target("single \(.op) at 32 connections >= 60% of ceiling"; .ratio; .ratio >= 0.6),
        target("single \(.op) at 32 connections p99 < 5 ms (worst run)"; (.p99_runs | max);
               (.p99_runs | max) < 5)),
      ($rows[] | select(.scenario == "batch") |
        target("batch \(.op) >= 85% of ceiling"; .ratio; .ratio >= 0.85)),
      ($rows[] | select(.scenario == "shim") |
        target("shim \(.op) >= 80% of \($model) ops/s"; .ratio; .ratio >= 0.8),
        target("shim \(.op): health p99 < 10 ms (worst run)"; (.health.p99_runs | max);
               (.health.p99_runs | max // 1e9) < 10)),
      ([http | .peak_rss_kib] | max | select(. != null) |
        target("peak RSS < 100 MiB"; (. / 1024); . / 1024 < 100)),
      ($rows[] | select(.scenario == "startup" and .phase == "after-populate") |
        target("start-up with \(.kek_versions) KEK versions < 1 s"; .max_s; .max_s < 1)),
      ([http | .non2xx + .item_errors + .socket_errors + (.health.non2xx // 0) + (.health.socket_errors // 0)] | add |
        select(. != null) | target("no errors"; .; . == 0))
    ]) }' "$rows" >"$out"

# The table, from the JSON.
{
  jq -r '"kekd benchmark  git \(.git_sha)\(if .dirty then " (uncommitted changes)" else "" end)  \(.started)",
         "machine: \(.machine.nproc) CPUs, \(.machine.cpu), \(.machine.mem_mib) MiB; load average \(.machine.loadavg_start) at start, \(.machine.loadavg_end) at end",
         "\(.settings.seconds) s per run after \(.settings.warmup) s warm-up; kekd hsm.sessions = \(.settings.sessions) (workers = sessions, on CPUs \(if .settings.worker_cpus == "none" then "any" else .settings.worker_cpus end); the shim'"'"'s on any); 32-byte keys; SoftHSM \(.software.softhsm)"' "$out"
  echo
  echo "In-process ceiling (kekd's PKCS#11 calls in a C++ loop, no HTTP): the median of the runs"
  jq -r '["scenario","op","threads","ops/s","runs (in order)"],
    (.rows[] | select(.scenario | endswith("ceiling")) |
      [.scenario, .op, .threads, (.ops_per_sec | floor),
       (.runs // [.ops_per_sec] | map(floor | tostring) | join(" "))]) | @tsv' "$out" |
    column -t -s $'\t'
  if jq -e '[.rows[] | select(.scenario == "single" or .scenario == "batch" or .scenario == "shim" or .scenario == "sustained")] | length > 0' "$out" >/dev/null; then
  echo
  echo "kekd over HTTP/1.1 keep-alive (wrk): the run with the median ops/s; ratio = ops/s / ceiling"
  echo "(the higher of the op's 1- and 2-thread medians); errors summed and RSS the peak over the runs"
  jq -r 'def f1: . * 10 | round / 10; def f2: . * 100 | round / 100;
    ["scenario","op","conns","batch","sess","req/s","ops/s","p50 ms","p99 ms","ceiling","ratio","RSS MiB","non2xx","item err","sock err","runs ops/s"],
    (.rows[] | select(.scenario == "single" or .scenario == "batch" or .scenario == "shim" or .scenario == "sustained") |
      [.scenario, .op, .connections, .batch, .sessions, (.rps | floor), (.ops_per_sec | floor),
       (.p50_ms | f2), (.p99_ms | f2),
       (if .scenario == "shim" then "model \(.model_ops_per_sec)" else (.ceiling_ops_per_sec // 0 | floor) end),
       (if .ratio then "\(.ratio * 100 | f1)%" else "-" end),
       (.peak_rss_kib / 1024 | f1), .non2xx, .item_errors, .socket_errors,
       (.runs // [.ops_per_sec] | map(floor | tostring) | join(" "))]) | @tsv' "$out" |
    column -t -s $'\t'
  fi
  jq -r '.rows[] | select(.scenario == "sustained") |
    "(sustained: \(.seconds | floor) s of wraps on one kekd, \(.requests) requests: peak RSS \(.peak_rss_kib / 1024 | floor) MiB, \(.reinitializations) re-initialisations of the module, slowest request \(.max_ms) ms)"' "$out"
  if jq -e '[.rows[] | select(.scenario == "shim")] | length > 0' "$out" >/dev/null; then
    echo
    probe=$(jq -r '.settings | "\(.health_connections) connections, \(.health_delay_ms) ms apart"' "$out")
    echo "Shim runs: against the in-process ceiling through the same shim, and GET /v1/health" \
      "meanwhile ($probe)"
    jq -r 'def f1: . * 10 | round / 10; def f2: . * 100 | round / 100;
      ["op","ops/s","shim ceiling","of ceiling","health conns","health req/s","health p50 ms","health p99 ms","health errors"],
      (.rows[] | select(.scenario == "shim") |
        [.op, (.ops_per_sec | floor), (.ceiling_ops_per_sec // 0 | floor),
         (if .ceiling_ratio then "\(.ceiling_ratio * 100 | f1)%" else "-" end),
         (.health.connections // "-"), (.health.rps // 0 | floor), (.health.p50_ms // 0 | f2),
         (.health.p99_ms // 0 | f2), ((.health.non2xx // 0) + (.health.socket_errors // 0))]) | @tsv' "$out" |
      column -t -s $'\t'
  fi
  if jq -e '[.rows[] | select(.scenario == "startup")] | length > 0' "$out" >/dev/null; then
    echo
    echo "Start-up: kekd serve started -> GET /v1/ready 200"
    jq -r '["when","KEK versions","median s","max s","runs"],
      (.rows[] | select(.scenario == "startup") |
        [.phase, .kek_versions, .median_s, .max_s, (.runs | map(tostring) | join(" "))]) | @tsv' "$out" |
      column -t -s $'\t'
    jq -r '.rows[] | select(.scenario == "populate") |
      "(kekd_bench_populate added \(.created) versions in \(.seconds) s)"' "$out"
  fi
  echo
  echo "Targets (reported, not enforced)"
  jq -r 'def f: if type == "number" then (if . < 10 then . * 1000 | round / 1000 else . * 10 | round / 10 end) else . end;
    .targets[] | [(if .met then "met " else "MISS" end), .target, (.measured | f)] | @tsv' "$out" |
    column -t -s $'\t'
  echo
  echo "JSON: $out"
  if [ -n "${perf_out:-}" ]; then echo "perf: $perf_out"; fi
} | tee "${out%.json}.txt"
