# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154  # root is the caller's; kekd_ready_s is for the caller
# Shared by the benchmark scripts (scripts/bench.sh, tests/bench/audit_overhead.sh); sourced, not
# run. Needs `root` (the source tree) set by the caller, and set -euo pipefail.
#
#   bench_build BUILD TARGET...   configure BUILD (Release, tests on, fault points off, audit.mode
#                                 "off" permitted) and build the targets
#   bench_deploy WORK PORT BUILD  a fresh deployment in WORK/var made by scripts/dev.sh (token,
#                                 key "demo", a client with every operation on it), dev.sh's kekd
#                                 stopped again; exports SOFTHSM2_CONF and KEKD_BENCH_TOKEN
#   bench_config BASE OUT KEY=VALUE...
#                                 OUT = BASE with these settings: section.key=value, e.g.
#                                 hsm.sessions=16 hsm.module='"/x.so"' server.workers=0
#                                 audit.mode='"off"' (values are TOML, so strings carry quotes)
#   kekd_start BUILD CONFIG PORT LOG [VAR=VALUE...]
#                                 starts `kekd serve` in the environment of hsm-config/kekd.env
#                                 plus these variables (pid in $kekd_pid), waits until /v1/ready
#                                 answers 200; sets $kekd_ready_s to the seconds from the start
#                                 to the first 200 (polled every ~5 ms). Not in $(...): kekd_pid
#                                 must survive.
#   kekd_stop                     SIGTERM, then waits for it
#   kekd_hwm_kib                  kekd's peak RSS so far (VmHWM, KiB)

bench_build() {
  local build=$1
  shift
  # KEKD_FAULT_POINTS defaults to KEKD_BUILD_TESTS: crash points have no place in a measurement.
  # -Wno-error=restrict: GCC 12 at -O3 reports a false -Wrestrict inside std::string's operator+
  # (seen in src/api/json_body.cc); it stays a warning here rather than failing the build.
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKEKD_BUILD_TESTS=ON \
    -DKEKD_FAULT_POINTS=OFF -DKEKD_BENCHMARK_AUDIT_OFF=ON -DCMAKE_CXX_FLAGS=-Wno-error=restrict \
    >/dev/null
  if ! cmake --build "$build" --parallel "$(nproc)" --target "$@" >"$build/bench-build.log" 2>&1; then
    grep -E 'error|FAILED' "$build/bench-build.log" | head -20 >&2
    echo "the build failed; the whole log: $build/bench-build.log" >&2
    return 1
  fi
}

bench_deploy() {
  local work=$1 port=$2 build=$3 dev_pid
  KEKD_DEV_VAR="$work/var" KEKD_DEV_PORT=$port KEKD_DEV_BUILD="$build" \
    bash "$root/scripts/dev.sh" >"$work/dev.log" 2>&1 &
  dev_pid=$!
  for _ in $(seq 1 600); do
    grep -q -- '--- end ---' "$work/dev.log" && break
    kill -0 "$dev_pid" 2>/dev/null || { cat "$work/dev.log" >&2; return 1; }
    sleep 0.1
  done
  grep -q -- '--- end ---' "$work/dev.log" || { cat "$work/dev.log" >&2; return 1; }
  kill -TERM "$dev_pid"
  wait "$dev_pid" || true
  eval "$(bash "$root/scripts/softhsm-token.sh" "$work/var/token" kekd)"  # SOFTHSM2_CONF
  KEKD_BENCH_TOKEN=$(cat "$work/var/demo-client.token")
  export SOFTHSM2_CONF KEKD_BENCH_TOKEN
}

bench_config() {
  local base=$1 out=$2
  shift 2
  # An awk pass over the TOML: a key that is present in its section is replaced, a missing one
  # is appended to its section, a missing section is appended with it.
  awk -v settings="$*" '
    BEGIN {
      n = split(settings, list, " ")
      for (i = 1; i <= n; i++) {
        eq = index(list[i], "="); dot = index(list[i], ".")
        sec = substr(list[i], 1, dot - 1); key = substr(list[i], dot + 1, eq - dot - 1)
        want[sec, key] = substr(list[i], eq + 1); keys[sec] = keys[sec] " " key; secs[sec] = 1
      }
    }
    function flush(   k, m, parts) {
      if (section == "" || !(section in secs)) return
      m = split(keys[section], parts, " ")
      for (k = 1; k <= m; k++) if (!((section, parts[k]) in done))
        { print parts[k] " = " want[section, parts[k]]; done[section, parts[k]] = 1 }
      seen[section] = 1
    }
    /^\[[a-z_]+\]$/ { flush(); section = substr($0, 2, length($0) - 2); print; next }
    {
      if (match($0, /^[a-z_]+[ \t]*=/)) {
        key = $0; sub(/[ \t]*=.*/, "", key)
        if ((section, key) in want) { print key " = " want[section, key]; done[section, key] = 1; next }
      }
      print
    }
    END {
      flush()
      for (s in secs) if (!(s in seen)) {
        printf "\n[%s]\n", s
        m = split(keys[s], parts, " ")
        for (k = 1; k <= m; k++) print parts[k] " = " want[s, parts[k]]
      }
    }' "$base" >"$out"
}

kekd_pid=""
kekd_ready_s=""

kekd_start() {
  local build=$1 config=$2 port=$3 log=$4 begin end
  shift 4
  if curl -fsS -o /dev/null "http://127.0.0.1:$port/v1/health" 2>/dev/null; then
    echo "something already answers on port $port (a kekd left running?)" >&2
    return 1
  fi
  begin=$(date +%s.%N)
  (set -a && . "$root/hsm-config/kekd.env" && exec env "$@" "$build/kekd" serve --config "$config") \
    >>"$log" 2>&1 &
  kekd_pid=$!
  for _ in $(seq 1 3000); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$port/v1/ready" 2>/dev/null; then
      end=$(date +%s.%N)
      kekd_ready_s=$(awk -v b="$begin" -v e="$end" 'BEGIN { printf "%.3f", e - b }')
      return 0
    fi
    kill -0 "$kekd_pid" 2>/dev/null || { tail -20 "$log" >&2; kekd_pid=""; return 1; }
    sleep 0.005
  done
  echo "kekd is not ready on port $port after 30 s" >&2
  kekd_stop
  return 1
}

kekd_stop() {
  if [ -n "$kekd_pid" ]; then
    kill -TERM "$kekd_pid" 2>/dev/null || true
    wait "$kekd_pid" 2>/dev/null || true
    kekd_pid=""
  fi
}

kekd_hwm_kib() {
  awk '/^VmHWM:/ { print $2 }' "/proc/$kekd_pid/status"
}
