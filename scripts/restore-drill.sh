#!/usr/bin/env bash
# The backup and restore drill of docs/operations.md ("Backup and restore"), whole, on SoftHSM, in
# a temporary directory, in well under a minute:
#
#   scripts/restore-drill.sh
#
# 1. A deployment: a SoftHSM token, three operators (2 of 3 approve), kekd init, kekd serve with a
#    ceremony.ttl of a few seconds. Through scripts/ceremony/: a create-key and a rotate-key
#    ceremony executed, and one create-key ceremony with a single approval, left to expire. An
#    application client.
# 2. Under load (several loops of datakey and wrap over HTTP): every ciphertext answered so far
#    is recorded with its plaintext, then the store is backed up (`kekctl backup`), then the token
#    directory copied, in that order, and kekd's audit public key kept. After more load, an
#    auditor's anchor is taken from an export of the live audit log.
# 3. The load stops, kekd is killed (-9) and the deployment directory deleted.
# 4. Restore into a new directory (store, token, config) and start kekd there. Checks, each
#    printed PASS or FAIL: the backup's audit log verifies; ready; the token is the same; every
#    recorded ciphertext unwraps to its plaintext; new data keys work; the executed and the expired
#    ceremonies are listed and their transcripts verify offline; with kekd stopped, `kekctl audit
#    verify` accepts the restored log (the backup's, continued by the restored kekd) and refuses
#    the auditor's anchor: the rollback to the backup point shows.
#
# Exits 0 only if every check passes. Environment: KEKD_BIN and KEKCTL_BIN (default build/kekd
# and build/kekctl); KEKD_DRILL_KEEP=1 keeps the temporary directory to look at afterwards.
# Needs bash, curl, jq, openssl and softhsm2-util, like scripts/dev.sh.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kekd=${KEKD_BIN:-$root/build/kekd}
kekctl=${KEKCTL_BIN:-$root/build/kekctl}
ceremony=$root/scripts/ceremony
ttl_seconds=8    # long enough to approve a ceremony on a busy machine, short enough to wait out
load_workers=3

started=$(date +%s%N)
die() { printf 'restore-drill: %s\n' "$*" >&2; exit 1; }
for tool in curl jq openssl softhsm2-util; do
  command -v "$tool" >/dev/null || die "$tool is missing (scripts/install-deps.sh installs it)"
done
[ -x "$kekd" ] || die "no kekd at $kekd (set KEKD_BIN)"
[ -x "$kekctl" ] || die "no kekctl at $kekctl (set KEKCTL_BIN)"

umask 077
work=$(mktemp -d "${TMPDIR:-/tmp}/kekd-restore-drill.XXXXXX")
site_a=$work/site-a  # the deployment that is lost
site_b=$work/site-b  # the new directory it is restored into
backup=$work/backup  # what goes offsite: the store copy, the token copy, the config
keep=$work/keep      # what people keep apart: operator keys, credentials, applications' data
mkdir -p "$site_a/var" "$backup" "$keep"

kekd_pid=""
load_pids=()
stop_load() {
  touch "$work/stop-load"
  local pid
  for pid in "${load_pids[@]+"${load_pids[@]}"}"; do wait "$pid" 2>/dev/null || true; done
  load_pids=()
}
cleanup() {
  local code=$?
  stop_load
  if [ -n "$kekd_pid" ]; then
    kill -9 "$kekd_pid" 2>/dev/null || true
    wait "$kekd_pid" 2>/dev/null || true
  fi
  if [ "${KEKD_DRILL_KEEP:-}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

failures=0
checks=0
pass() { checks=$((checks + 1)); printf 'PASS  %s\n' "$*"; }
fail() { checks=$((checks + 1)); failures=$((failures + 1)); printf 'FAIL  %s\n' "$*"; }
step() { printf '== %s\n' "$*"; }
# quiet CMD...: CMD's chatter only if it fails.
quiet() { "$@" >"$work/quiet.log" 2>&1 || { cat "$work/quiet.log" >&2; die "failed: $*"; }; }

# --- kekd -----------------------------------------------------------------------------------------

addr=""
# start_kekd SITE: kekd serve in SITE; waits until it is ready and sets addr (kekd listens on
# port 0, so the port comes from its "serving on" line; a fixed port could be taken).
start_kekd() {
  local site=$1 line=""
  "$kekd" serve --config "$site/kekd.toml" >>"$site/kekd.log" 2>&1 &
  kekd_pid=$!
  for _ in $(seq 1 150); do
    line=$(grep -o 'serving on http://127\.0\.0\.1:[0-9]*' "$site/kekd.log" | tail -n1 || true)
    [ -n "$line" ] && break
    kill -0 "$kekd_pid" 2>/dev/null || die "kekd exited: $(tail -n5 "$site/kekd.log")"
    sleep 0.1
  done
  [ -n "$line" ] || die "kekd did not start listening: $(tail -n5 "$site/kekd.log")"
  addr=${line#serving on }
  for _ in $(seq 1 150); do
    curl -fsS "$addr/v1/ready" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "kekd is not ready at $addr: $(tail -n5 "$site/kekd.log")"
}

stop_kekd() { # SIGNAL
  kill "-$1" "$kekd_pid"
  wait "$kekd_pid" 2>/dev/null || true
  kekd_pid=""
}

# Credentials go to curl as header files (-H @FILE), never on a command line.
admin() { curl -fsS -H @"$keep/admin.header" "$@"; }
app() { curl -fsS -H @"$keep/app.header" "$@"; }
scripts_env() { KEKD_ADDR=$addr KEKD_TOKEN=$(cat "$keep/admin.token") "$@"; }

propose() { # prints the new ceremony's id
  scripts_env bash "$ceremony/propose.sh" "$@" 2>"$work/propose.log" ||
    { cat "$work/propose.log" >&2; return 1; }
}
approve() { # ID OPERATOR
  local statement=$keep/statement-$1.txt sig=$keep/$1.$2.sig
  quiet scripts_env bash "$ceremony/show.sh" "$1" --out "$statement"
  quiet bash "$ceremony/sign.sh" "$statement" "$keep/operators/$2.key" --out "$sig"
  quiet scripts_env bash "$ceremony/approve.sh" "$1" "$2" "$sig"
}

# load_worker N: datakey and wrap in turn with context {"worker": N}, until told to stop. Each
# ciphertext is appended as one JSON line {ciphertext, context, plaintext} once it is answered.
load_worker() {
  local n=$1 out=$keep/load-$1.jsonl ctx i=0 plaintext answer
  ctx=$(jq -nc --arg n "$n" '{worker: $n}')
  while [ ! -e "$work/stop-load" ]; do
    i=$((i + 1))
    if ((i % 2)); then
      answer=$(jq -nc --argjson c "$ctx" '{bytes: 32, context: $c}' |
        app -d @- "$addr/v1/keys/drill/datakey") || { echo x >>"$keep/load-errors"; continue; }
      jq -c --argjson c "$ctx" '{ciphertext, context: $c, plaintext}' <<<"$answer" >>"$out" ||
        echo x >>"$keep/load-errors"
    else
      plaintext=$(head -c 24 /dev/urandom | base64 -w0)
      answer=$(jq -nc --arg p "$plaintext" --argjson c "$ctx" '{plaintext: $p, context: $c}' |
        app -d @- "$addr/v1/keys/drill/wrap") || { echo x >>"$keep/load-errors"; continue; }
      jq -c --arg p "$plaintext" --argjson c "$ctx" '{ciphertext, context: $c, plaintext: $p}' \
        <<<"$answer" >>"$out" || echo x >>"$keep/load-errors"
    fi
  done
}

# --- 1. the deployment ----------------------------------------------------------------------------

step "deployment in $site_a (SoftHSM, 2 of 3 operators, ceremony.ttl ${ttl_seconds}s)"
eval "$(bash "$root/scripts/softhsm-token.sh" "$site_a/token" kekd)" # exports SOFTHSM2_CONF
: >"$keep/operators.toml"
for op in alice bob carol; do
  quiet bash "$ceremony/keygen.sh" "$op" --dir "$keep/operators"
  printf '[[operator]]\nname = "%s"\npublic_key = "operators/%s.pub.pem"\n\n' "$op" "$op" \
    >>"$keep/operators.toml"
done
# Relative paths (to this file): the same file works unchanged in the restored directory.
cat >"$site_a/kekd.toml" <<TOML
[server]
listen = "127.0.0.1:0"
[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "kekd"
pin_file = "token/pin"
sessions = 4
[store]
path = "var/kekd.db"
[ceremony]
ttl = "${ttl_seconds}s"
TOML
quiet "$kekd" init --config "$site_a/kekd.toml" --operators "$keep/operators.toml" --threshold 2 \
  --admin-credential-out "$keep/admin.token"
printf 'Authorization: Bearer %s\n' "$(cat "$keep/admin.token")" >"$keep/admin.header"
start_kekd "$site_a"

# First the one that expires: it runs out while the others are approved and the load runs.
lapsed=$(propose create-key lapsed)
approve "$lapsed" carol
created=$(propose create-key drill)
approve "$created" alice
approve "$created" bob
jq -nc '{grants: [{key: "drill", operations: ["datakey", "wrap", "unwrap"]}]}' |
  admin -d @- "$addr/v1/clients" | jq -r '"Authorization: Bearer \(.token)"' >"$keep/app.header"
# A few ciphertexts under version 1, before the rotation.
for _ in 1 2 3 4 5; do
  app -d '{"bytes":32,"context":{"phase":"v1"}}' "$addr/v1/keys/drill/datakey" |
    jq -c '{ciphertext, context: {phase: "v1"}, plaintext}' >>"$keep/v1.jsonl"
done
rotated=$(propose rotate-key drill)
approve "$rotated" alice
approve "$rotated" bob
echo "ceremonies: create-key drill $created, rotate-key drill $rotated (executed);" \
  "create-key lapsed $lapsed (1 of 2 approvals, to expire)"

# --- 2. backup under load -------------------------------------------------------------------------

step "load: $load_workers loops of datakey and wrap"
for n in $(seq 1 "$load_workers"); do
  load_worker "$n" &
  load_pids+=($!)
done
# Until the lapsed ceremony has expired and the load has made a fair number of ciphertexts; on a
# slow machine, whatever there is after a while (the checks then say what is missing).
expired() {
  admin "$addr/v1/ceremonies?state=expired" |
    jq -e --arg id "$lapsed" 'any(.ceremonies[]; .id == $id)' >/dev/null
}
deadline=$((SECONDS + ttl_seconds + 20))
until expired && [ "$(cat "$keep"/load-*.jsonl 2>/dev/null | wc -l)" -ge 100 ]; do
  [ "$SECONDS" -lt "$deadline" ] || break
  sleep 0.2
done

step "backup while the load runs: the store first, then the token"
# What the applications hold before the backup starts: complete lines only.
for f in "$keep"/load-*.jsonl; do
  head -n "$(wc -l <"$f")" "$f"
done >"$keep/before-backup.jsonl"
KEKD_TOKEN_FILE=$keep/admin.token "$kekctl" --addr "$addr" backup --out "$backup/store" \
  >"$keep/backup-description.json" || die "kekctl backup failed"
cat "$keep/backup-description.json"
cp -a "$site_a/token" "$backup/token"
cp -a "$site_a/kekd.toml" "$backup/kekd.toml"
admin "$addr/v1/audit/public-key" >"$backup/audit.pem"
sleep 1 # more acknowledged work after the backup point: lost with the deployment
stop_load
# An auditor's anchor from after the backup point: the last record of an export, as verified.
KEKD_TOKEN_FILE=$keep/admin.token quiet "$kekctl" --addr "$addr" audit export \
  --out "$keep/audit.jsonl"
"$kekctl" audit verify "$keep/audit.jsonl" --public-key "$backup/audit.pem" \
  >"$keep/audit-export.json" ||
  die "the export of the live audit log does not verify: $(cat "$keep/audit-export.json")"
anchor=$(jq -r '"\(.last_seq):\(.last_hash)"' "$keep/audit-export.json")
recorded=$(wc -l <"$keep/before-backup.jsonl")
load_errors=0
[ -f "$keep/load-errors" ] && load_errors=$(wc -l <"$keep/load-errors")

# What kekctl wrote: the copy, described by backup.json, private.
description=$backup/store/backup.json
digest=$(sha256sum <"$backup/store/kekd.db" | cut -d' ' -f1)
if [ "$digest" = "$(jq -r .sha256 "$description")" ] &&
  [ "$(wc -c <"$backup/store/kekd.db")" = "$(jq -r .bytes "$description")" ] &&
  cmp -s "$description" "$keep/backup-description.json" &&
  [ "$(stat -c %a "$backup/store") $(stat -c %a "$backup/store/kekd.db")" = "700 600" ]; then
  pass "kekctl backup: kekd.db matches backup.json ($(jq -r .bytes "$description") bytes)," \
    "modes 700/600"
else
  fail "kekctl backup: kekd.db does not match backup.json, or the modes are not 700/600"
fi
if [ "$load_errors" = 0 ]; then
  pass "load: no request failed, before, during or after the backup" \
    "($(cat "$keep"/load-*.jsonl | wc -l) ciphertexts from $load_workers connections)"
else
  fail "load: $load_errors requests failed while the backup ran"
fi

step "disaster: kill -9 kekd, delete $site_a"
stop_kekd KILL
rm -rf "$site_a"

# --- 3. restore -----------------------------------------------------------------------------------

step "restore into $site_b"
mkdir -p "$site_b/var"
cp -a "$backup/token" "$site_b/token"
# softhsm2.conf names its token directory by absolute path: point it at the new place. The script
# finds the copied token by its label and keeps it.
eval "$(bash "$root/scripts/softhsm-token.sh" "$site_b/token" kekd)"
cp -a "$backup/kekd.toml" "$site_b/kekd.toml"
install -m 600 "$backup/store/kekd.db" "$site_b/var/kekd.db"

# audit_verify NAME ARGS...: kekctl audit verify ARGS with the backed-up public key; its JSON
# answer in $keep/verify-NAME.json.
audit_verify() {
  local name=$1
  shift
  "$kekctl" audit verify --public-key "$backup/audit.pem" "$@" >"$keep/verify-$name.json" 2>&1
}
if audit_verify backup --store "$backup/store/kekd.db"; then
  backup_seq=$(jq -r .last_seq "$keep/verify-backup.json")
  pass "kekctl audit verify: the backup's audit log verifies (records 1 to $backup_seq)"
else
  fail "kekctl audit verify: the backup's audit log: $(tr '\n' ' ' <"$keep/verify-backup.json")"
fi
start_kekd "$site_b"

# --- 4. checks ------------------------------------------------------------------------------------

if admin "$addr/v1/ready" | jq -e '.ready == true' >/dev/null; then
  pass "GET /v1/ready: ready"
else
  fail "GET /v1/ready: not ready"
fi

if admin "$addr/v1/audit/public-key" | cmp -s - "$backup/audit.pem"; then
  pass "the audit public key is the one backed up (the same token)"
else
  fail "the audit public key differs from the one backed up"
fi

# Every ciphertext the applications held before the backup, v1 ones included, in batches.
all=$keep/recorded.jsonl
cat "$keep/v1.jsonl" "$keep/before-backup.jsonl" >"$all"
total=$(wc -l <"$all")
wrong=0
for ((i = 0; i < total; i += 500)); do
  jq -sc --argjson i "$i" '{items: [.[$i:$i + 500][] | {ciphertext, context}]}' "$all" |
    app -d @- "$addr/v1/keys/drill/unwrap" >"$keep/answer.json" || { wrong=$total; break; }
  bad=$(jq -s --argjson i "$i" --slurpfile got "$keep/answer.json" \
    '[.[$i:$i + 500] | to_entries[] | select($got[0].items[.key].plaintext != .value.plaintext)]
     | length' "$all")
  wrong=$((wrong + bad))
done
if [ "$total" -gt 5 ] && [ "$wrong" = 0 ]; then
  pass "all $total ciphertexts issued before the backup unwrap to their plaintexts" \
    "(5 of key version 1, $recorded under load)"
else
  fail "$wrong of $total ciphertexts issued before the backup do not unwrap to their plaintexts"
fi

fresh=$(app -d '{"bytes":32}' "$addr/v1/keys/drill/datakey" || true)
if [ -n "$fresh" ] && jq -c '{ciphertext, context: {}}' <<<"$fresh" |
  app -d @- "$addr/v1/keys/drill/unwrap" | jq -e --arg p "$(jq -r .plaintext <<<"$fresh")" \
    '.plaintext == $p and .version == 2' >/dev/null; then
  pass "a new data key after the restore is made under version 2 and unwraps"
else
  fail "no new data key under version 2 after the restore"
fi

pins=()
for op in alice bob carol; do pins+=(--operator "$op=$keep/operators/$op.pub.pem"); done
# check_ceremony ID STATE: listed in that state, and its transcript verifies offline.
check_ceremony() {
  local id=$1 state=$2 transcript=$keep/transcript-$1.json out
  if admin "$addr/v1/ceremonies?state=$state" |
    jq -e --arg id "$id" 'any(.ceremonies[]; .id == $id)' >/dev/null; then
    pass "ceremony $id is listed as $state"
  else
    fail "ceremony $id is not listed as $state"
  fi
  if scripts_env bash "$ceremony/transcript.sh" "$id" --out "$transcript" >/dev/null 2>&1 &&
    out=$(bash "$ceremony/verify-transcript.sh" "$transcript" --kekd-key "$backup/audit.pem" \
      "${pins[@]}" --id "$id" --quiet 2>&1) &&
    [[ $out == "transcript verified: $id $state "* ]]; then
    pass "$out"
  else
    fail "the transcript of $state ceremony $id does not verify: ${out:-not fetched}"
  fi
}
check_ceremony "$created" executed
check_ceremony "$rotated" executed
check_ceremony "$lapsed" expired

stop_kekd TERM # the final checkpoint; then the file is kekctl's alone
if audit_verify restored --store "$site_b/var/kekd.db"; then
  pass "kekctl audit verify: the restored audit log verifies, kekd's records after the restore" \
    "included (records 1 to $(jq -r .last_seq "$keep/verify-restored.json"))"
else
  fail "kekctl audit verify: the restored audit log: $(tr '\n' ' ' <"$keep/verify-restored.json")"
fi
# The records between the backup point and the loss are gone: an auditor's later anchor shows it.
if audit_verify anchored --store "$site_b/var/kekd.db" --anchor "$anchor"; then
  fail "kekctl audit verify --anchor: the anchor ${anchor%%:*} from after the backup still matches"
else
  pass "kekctl audit verify --anchor: the auditor's anchor from after the backup (record" \
    "${anchor%%:*}) no longer matches: the rollback to record ${backup_seq:-?} is detected"
fi

elapsed=$((($(date +%s%N) - started) / 1000000))
printf 'restore drill: %d of %d checks passed in %d.%03d s\n' $((checks - failures)) "$checks" \
  $((elapsed / 1000)) $((elapsed % 1000))
[ "$failures" = 0 ]
