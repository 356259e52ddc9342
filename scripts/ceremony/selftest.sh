#!/usr/bin/env bash
# Offline self-test of the ceremony scripts: no kekd needed. See --help.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
KC_PROG=selftest.sh

usage() {
  cat <<'EOF'
Usage: selftest.sh [--keep] [--jobs N]

Tests the ceremony scripts offline, with hand-made inputs (openssl, jq, printf only):
  - keygen.sh (Ed25519, ECDSA P-256) and sign.sh round trips, checked with openssl directly
  - show.sh and sign.sh refuse malformed statements
  - a hand-made transcript (a "kekd audit" P-256 key, 3 operators, a statement and
    operator set per docs/ceremony-formats.md, signed and wrapped with openssl and jq -c) is
    accepted by verify-transcript.sh, and rejected: after ANY single-byte change of the JSON file
    (every position, 4 replacement bytes each), with a wrong audit key, a wrong signer line, an
    approval signed over another statement, too few approvals for executed, a duplicate or
    unknown operator, a foreign operator set, a wrong pinned key, non-canonical JSON
  - propose.sh --dry-run builds the set-operators body from a TOML operators file
  - if softhsm2-util and pkcs11-tool are installed: signing with a token key via pkcs11-tool
    (ECDSA and EdDSA), verified with openssl and inside a transcript

  --keep     keep the work directory and print its path
  --jobs N   parallel workers for the every-byte test (default: nproc)

Ends with "N passed, M failed"; exits 0 only if nothing failed.
EOF
}

keep=0 jobs=$(nproc 2>/dev/null || echo 2)
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --keep) keep=1; shift ;;
    --jobs) kc_needval "$@"; jobs=$2; shift 2 ;;
    *) kc_usage_error "unknown argument $1" ;;
  esac
done
kc_need openssl jq base64 sha256sum cmp od
started=$(date +%s%N)
W=$(mktemp -d "${TMPDIR:-/tmp}/kekd-ceremony-selftest.XXXXXXXX")
if ((keep)); then trap 'echo "work directory: $W"' EXIT; else trap 'rm -rf -- "$W"' EXIT; fi
cd "$W"
S=$here

passed=0 failed=0
ok() { passed=$((passed + 1)); printf 'ok   %3d  %s\n' "$((passed + failed))" "$1"; }
bad() {
  failed=$((failed + 1))
  printf 'FAIL %3d  %s\n' "$((passed + failed))" "$1"
  if [[ -n ${2-} ]]; then printf '%s\n' "$2" | head -n 12 | sed 's/^/          | /'; fi
}
# expect_ok DESC CMD...: exit status 0.
expect_ok() {
  local d=$1 rc=0
  shift
  "$@" >"$W/out" 2>&1 || rc=$?
  if ((rc == 0)); then ok "$d"; else bad "$d (exit $rc)" "$(cat "$W/out")"; fi
}
# expect_fail DESC PATTERN CMD...: exit status 1 and PATTERN (fixed string) in the output.
expect_fail() {
  local d=$1 pat=$2 rc=0
  shift 2
  "$@" >"$W/out" 2>&1 || rc=$?
  if ((rc == 1)) && grep -qF -- "$pat" "$W/out"; then ok "$d"; else bad "$d (exit $rc, expected 1 and '$pat')" "$(cat "$W/out")"; fi
}
# verify_rejects DESC CHECKNAME TRANSCRIPT [ARGS...]: verify-transcript.sh fails on that check.
verify_rejects() {
  local d=$1 check=$2 t=$3
  shift 3
  expect_fail "$d" "FAILED check \"$check\"" "$S/verify-transcript.sh" "$t" --kekd-key audit.pub.pem "$@"
}

# Independent helpers (openssl, not lib.sh) for the hand-made inputs.
spki_b64() { openssl pkey -pubin -in "$1" -outform DER | base64 -w0; }
fpr() { printf 'sha256:%s' "$(openssl pkey -pubin -in "$1" -outform DER | sha256sum | cut -c1-64)"; }
osign() { # ALG KEY FILE -> raw signature on stdout
  if [[ $1 == ed25519 ]]; then openssl pkeyutl -sign -inkey "$2" -rawin -in "$3"
  else openssl dgst -sha256 -sign "$2" "$3"; fi
}
rand_id() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }

echo "# keygen.sh and sign.sh"
mkdir keys
declare -A ALG=([alice]=ed25519 [bob]=ecdsa-p256 [carol]=ed25519 [dave]=ecdsa-p256)
for n in alice bob carol dave; do
  flag=()
  [[ ${ALG[$n]} == ecdsa-p256 ]] && flag=(--ecdsa)
  rc=0
  "$S/keygen.sh" "$n" "${flag[@]+"${flag[@]}"}" --dir keys >"$W/kg.$n" 2>&1 || rc=$?
  want="public key: keys/$n.pub.pem
fingerprint: $(fpr "keys/$n.pub.pem" 2>/dev/null)"
  mode=$(stat -c %a "keys/$n.key" 2>/dev/null || echo none)
  txt=$(openssl pkey -pubin -in "keys/$n.pub.pem" -text_pub -noout 2>/dev/null || true)
  case ${ALG[$n]} in ed25519) algok='ED25519 Public-Key' ;; *) algok='prime256v1' ;; esac
  if ((rc == 0)) && [[ $mode == 600 && $(grep -v '^ ' "$W/kg.$n" | grep -v '^operator ') == "$want" && $txt == *"$algok"* ]]; then
    ok "keygen.sh $n ${flag[*]-}: ${ALG[$n]}, key mode 0600, fingerprint = sha256 of DER SPKI"
  else
    bad "keygen.sh $n (exit $rc, mode $mode)" "$(cat "$W/kg.$n")"
  fi
done
expect_fail "keygen.sh refuses to overwrite an existing key" "already exists" "$S/keygen.sh" alice --dir keys
rc=0; "$S/keygen.sh" Alice --dir keys >/dev/null 2>&1 || rc=$?
if ((rc == 2)); then ok "keygen.sh refuses an invalid operator name (usage error)"; else bad "keygen.sh Alice: exit $rc"; fi

id1=$(rand_id)
# The genesis operator set, threshold 2, canonical per the spec (sorted by name).
{
  printf 'kekd operator-set v1\nthreshold: 2\n'
  for n in alice bob carol; do printf 'operator: %s %s %s\n' "$n" "${ALG[$n]}" "$(spki_b64 "keys/$n.pub.pem")"; done
} >set.txt
sethash="sha256:$(sha256sum <set.txt | cut -c1-64)"
mkstatement() { # ID ACTION KEY [EXPIRES]
  printf 'kekd ceremony v1\nid: %s\naction: %s\nkey: %s\noperator-set: %s\nthreshold: 2\nproposed-by: admin\nproposed-at: 2026-11-23T10:00:00Z\nexpires-at: %s\n' \
    "$1" "$2" "$3" "$sethash" "${4:-2026-11-24T10:00:00Z}"
}
mkstatement "$id1" create-key payments >"statement-$id1.txt"

for n in alice bob; do
  rc=0
  "$S/sign.sh" "statement-$id1.txt" "keys/$n.key" >"$W/sg.$n" 2>&1 || rc=$?
  sig="statement-$id1.$n.sig"
  v=1
  if ((rc == 0)) && base64 -d "$sig" >"$sig.bin" 2>/dev/null; then
    if [[ ${ALG[$n]} == ed25519 ]]; then
      [[ $(wc -c <"$sig.bin") -eq 64 ]] &&
        openssl pkeyutl -verify -pubin -inkey "keys/$n.pub.pem" -rawin -in "statement-$id1.txt" -sigfile "$sig.bin" >/dev/null 2>&1 && v=0
    else
      openssl dgst -sha256 -verify "keys/$n.pub.pem" -signature "$sig.bin" "statement-$id1.txt" >/dev/null 2>&1 && v=0
    fi
  fi
  if ((v == 0)); then ok "sign.sh with ${ALG[$n]} key: base64 signature verifies with openssl"; else bad "sign.sh $n (exit $rc)" "$(cat "$W/sg.$n")"; fi
done
rc=0
P=s3lftest "$S/keygen.sh" erin --ecdsa --dir keys --passout env:P >/dev/null 2>&1 || rc=$?
P=s3lftest "$S/sign.sh" "statement-$id1.txt" keys/erin.key --passin env:P --out erin.sig >/dev/null 2>&1 || rc=$?
if ((rc == 0)) && grep -q 'BEGIN ENCRYPTED PRIVATE KEY' keys/erin.key && base64 -d erin.sig >erin.bin &&
  openssl dgst -sha256 -verify keys/erin.pub.pem -signature erin.bin "statement-$id1.txt" >/dev/null 2>&1; then
  ok "keygen.sh --passout / sign.sh --passin: encrypted ECDSA key round trip"
else
  bad "encrypted key round trip (exit $rc)"
fi
# No private key material in anything the scripts printed.
leak=0
for n in alice bob carol dave; do
  while IFS= read -r l; do
    [[ $l == -----* || ${#l} -lt 16 ]] && continue
    grep -qF -- "$l" "$W"/kg.* "$W"/sg.* && leak=1
  done <"keys/$n.key"
done
if ((leak == 0)) && ! grep -q 'PRIVATE KEY' "$W"/kg.* "$W"/sg.*; then ok "no private key material in the scripts' output"; else bad "private key material printed"; fi

sed -e '4{h;d}' -e '5{G}' "statement-$id1.txt" >swapped.txt # key: and operator-set: swapped
expect_fail "sign.sh refuses a statement with fields out of order" "not a well-formed ceremony statement" \
  "$S/sign.sh" swapped.txt keys/alice.key --out x.sig
expect_fail "sign.sh refuses a public key as the signing key" "is a public key" \
  "$S/sign.sh" "statement-$id1.txt" keys/alice.pub.pem --out x.sig
printf 'kekd ceremony v1\r\n' >crlf.txt
expect_fail "sign.sh refuses a statement with CRLF line endings" "not printable ASCII" "$S/sign.sh" crlf.txt keys/alice.key --out x.sig
expect_ok "show.sh --from accepts the well-formed statement" "$S/show.sh" "$id1" --from "statement-$id1.txt" --expect-set "$sethash"
expect_fail "show.sh rejects a statement for another ceremony id" "DO NOT SIGN" "$S/show.sh" "$(rand_id)" --from "statement-$id1.txt"
expect_fail "show.sh rejects fields out of order" "should be 'key: ...'" "$S/show.sh" "$id1" --from swapped.txt
expect_fail "show.sh --expect-set rejects another operator-set hash" "you expected" \
  "$S/show.sh" "$id1" --from "statement-$id1.txt" --expect-set "sha256:$(printf x | sha256sum | cut -c1-64)"

echo "# hand-made transcripts"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out audit.key 2>/dev/null
openssl pkey -in audit.key -pubout -out audit.pub.pem
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out other-audit.key 2>/dev/null
openssl pkey -in other-audit.key -pubout -out other-audit.pub.pem

approval() { # NAME AT STATEMENT [KEYNAME]: one approval line signed with openssl
  local k=${4:-$1}
  printf 'approval: %s %s %s\n' "$1" "$2" "$(osign "${ALG[$k]}" "keys/$k.key" "$3" | base64 -w0)"
}
# mktranscript OUT ID STATEMENT SETFILE APPROVALSFILE OUTCOME [AUDITKEY] [SIGNERPUB]
mktranscript() {
  local out=$1 id=$2 st=$3 set=$4 ap=$5 outcome=$6 akey=${7:-audit.key} spub=${8:-audit.pub.pem}
  {
    printf 'kekd transcript v1\nceremony: %s\nsigner: %s\n--- statement\n' "$id" "$(fpr "$spub")"
    cat "$st"
    printf -- '--- operator-set\n'
    cat "$set"
    printf -- '--- approvals\n'
    cat "$ap"
    printf -- '--- outcome\n%s' "$outcome"
  } >"$out.doc"
  openssl dgst -sha256 -sign "$akey" -out "$out.sig" "$out.doc"
  jq -nc --rawfile d "$out.doc" --arg s "$(base64 -w0 "$out.sig")" '{document: $d, signature: $s}' >"$out"
}
executed=$'state: executed\nfinished-at: 2026-11-23T10:07:01Z\nresult: created key payments version 1\n'
{
  approval alice 2026-11-23T10:05:00Z "statement-$id1.txt"
  approval bob 2026-11-23T10:07:00Z "statement-$id1.txt"
} >ap.good
mktranscript good.json "$id1" "statement-$id1.txt" set.txt ap.good "$executed"

rc=0
"$S/verify-transcript.sh" good.json --kekd-key audit.pub.pem >"$W/out" 2>&1 || rc=$?
if ((rc == 0)) && [[ $(tail -n1 "$W/out") == "transcript verified: $id1 executed (2 of 2 approvals)" ]]; then
  ok "hand-made executed transcript verifies: $(tail -n1 "$W/out")"
else
  bad "hand-made transcript rejected (exit $rc)" "$(cat "$W/out")"
fi
expect_ok "verifies with every operator's key pinned (--operator) and --id" \
  "$S/verify-transcript.sh" good.json --kekd-key audit.pub.pem --id "$id1" \
  --operator alice=keys/alice.pub.pem --operator bob=keys/bob.pub.pem --operator carol=keys/carol.pub.pem
verify_rejects "rejected: a pinned key that differs from the transcript's" "pinned operator keys" good.json \
  --operator alice=keys/alice.pub.pem --operator carol=keys/dave.pub.pem
verify_rejects "rejected: pinning an operator not in the set" "pinned operator keys" good.json --operator dave=keys/dave.pub.pem
verify_rejects "rejected: --id of another ceremony" "statement" good.json --id "$(rand_id)"
expect_fail "rejected: wrong audit key" 'FAILED check "kekd signature"' \
  "$S/verify-transcript.sh" good.json --kekd-key other-audit.pub.pem
mktranscript signer.json "$id1" "statement-$id1.txt" set.txt ap.good "$executed" audit.key other-audit.pub.pem
verify_rejects "rejected: signer line names another key" "signer fingerprint" signer.json

# An approval whose signature is over another ceremony's statement (same action, other id).
id2=$(rand_id)
mkstatement "$id2" create-key payments >"statement-$id2.txt"
{
  approval alice 2026-11-23T10:05:00Z "statement-$id1.txt"
  approval bob 2026-11-23T10:07:00Z "statement-$id2.txt"
} >ap.other
mktranscript other.json "$id1" "statement-$id1.txt" set.txt ap.other "$executed"
verify_rejects "rejected: an approval signed over another ceremony's statement" "approvals" other.json

approval alice 2026-11-23T10:05:00Z "statement-$id1.txt" >ap.one
mktranscript one.json "$id1" "statement-$id1.txt" set.txt ap.one "$executed"
verify_rejects "rejected: executed with 1 approval, threshold 2" "threshold" one.json
mktranscript open.json "$id1" "statement-$id1.txt" set.txt ap.one $'state: open\n'
expect_ok "an open ceremony with 1 approval verifies" "$S/verify-transcript.sh" open.json --kekd-key audit.pub.pem
mktranscript open-result.json "$id1" "statement-$id1.txt" set.txt ap.one $'state: open\nresult: created\n'
verify_rejects "rejected: open ceremony with a result line" "outcome" open-result.json

{
  approval alice 2026-11-23T10:05:00Z "statement-$id1.txt"
  approval alice 2026-11-23T10:06:00Z "statement-$id1.txt"
} >ap.dup
mktranscript dup.json "$id1" "statement-$id1.txt" set.txt ap.dup "$executed"
verify_rejects "rejected: the same operator twice" "approvals" dup.json

{
  approval alice 2026-11-23T10:05:00Z "statement-$id1.txt"
  approval dave 2026-11-23T10:07:00Z "statement-$id1.txt"
} >ap.unknown
mktranscript unknown.json "$id1" "statement-$id1.txt" set.txt ap.unknown "$executed"
verify_rejects "rejected: an approval by an operator outside the set" "approvals" unknown.json

{
  approval alice 2026-11-23T10:05:00Z "statement-$id1.txt"
  approval bob 2026-11-24T10:00:01Z "statement-$id1.txt"
} >ap.late
mktranscript late.json "$id1" "statement-$id1.txt" set.txt ap.late "$executed"
verify_rejects "rejected: an approval timed after expires-at" "approvals" late.json

# Approvals signed by dave's key but attributed to carol: signature must fail.
{
  approval alice 2026-11-23T10:05:00Z "statement-$id1.txt"
  approval carol 2026-11-23T10:07:00Z "statement-$id1.txt" dave
} >ap.wrongkey
mktranscript wrongkey.json "$id1" "statement-$id1.txt" set.txt ap.wrongkey "$executed"
verify_rejects "rejected: an approval signed with another operator's key" "approvals" wrongkey.json

# A different operator set (dave instead of carol), whose hash the statement does not name.
{
  printf 'kekd operator-set v1\nthreshold: 2\n'
  for n in alice bob dave; do printf 'operator: %s %s %s\n' "$n" "${ALG[$n]}" "$(spki_b64 "keys/$n.pub.pem")"; done
} >set.foreign
mktranscript foreign.json "$id1" "statement-$id1.txt" set.foreign ap.good "$executed"
verify_rejects "rejected: an operator-set section the statement's hash does not name" "operator set" foreign.json

jq . good.json >pretty.json
verify_rejects "rejected: pretty-printed JSON (same content)" "canonical JSON (jq -c form)" pretty.json
jq -c '{signature, document}' good.json >swapped.json
verify_rejects "rejected: members in the other order" "canonical JSON (jq -c form)" swapped.json
head -c -1 good.json >nolf.json
verify_rejects "rejected: missing final LF" "canonical JSON (jq -c form)" nolf.json
jq -c '. + {extra: 1}' good.json >extra.json
verify_rejects "rejected: an extra member" "canonical JSON (jq -c form)" extra.json

# A set-operators ceremony (operator lines and new-threshold in the statement).
id3=$(rand_id)
{
  printf 'kekd ceremony v1\nid: %s\naction: set-operators\n' "$id3"
  for n in alice bob dave; do printf 'operator: %s %s %s\n' "$n" "${ALG[$n]}" "$(spki_b64 "keys/$n.pub.pem")"; done
  printf 'new-threshold: 2\noperator-set: %s\nthreshold: 2\nproposed-by: admin\nproposed-at: 2026-11-23T10:00:00Z\nexpires-at: 2026-11-24T10:00:00Z\n' "$sethash"
} >"statement-$id3.txt"
{
  approval carol 2026-11-23T10:05:00Z "statement-$id3.txt"
  approval bob 2026-11-23T10:07:00Z "statement-$id3.txt"
} >ap.setops
mktranscript setops.json "$id3" "statement-$id3.txt" set.txt ap.setops \
  $'state: executed\nfinished-at: 2026-11-23T10:07:01Z\nresult: operator set replaced\n'
expect_ok "a set-operators transcript verifies" "$S/verify-transcript.sh" setops.json --kekd-key audit.pub.pem
expect_ok "show.sh accepts the set-operators statement" "$S/show.sh" "$id3" --from "statement-$id3.txt"

echo "# every single-byte change of the transcript file"
# Fast path = the verifier's first checks, through the same lib.sh functions it uses:
# kc_transcript_envelope (exact jq -c form, pure bash) and kc_verify_kekd_signature (openssl).
# A change those do not reject is run through the whole verify-transcript.sh.
kc_read_exact good.json content || { bad "cannot read good.json"; content=""; }
len=${#content}
cyc=(00 0a 22 5c 20 7f 41 3d)
mutate_worker() { # WORKER JOBS
  local w=$1 n=$2 p o r hx d="$W/mut$1" total=0 fast=0 full=0 accepted=0 f
  local -a reps
  mkdir -p "$d"
  f="$d/t.json"
  for ((p = w; p < len; p += n)); do
    printf -v o '%d' "'${content:p:1}"
    reps=($((o ^ 1)) $((o ^ 32)) $((o ^ 128)))
    r=$((16#${cyc[p % 8]}))
    ((r == o || r == (o ^ 1) || r == (o ^ 32))) && r=$((16#${cyc[(p + 3) % 8]}))
    ((r == o)) && r=$((16#${cyc[(p + 5) % 8]}))
    reps+=("$r")
    for r in "${reps[@]}"; do
      printf -v hx '%02x' "$r"
      { printf '%s' "${content:0:p}"; printf "\\x$hx"; printf '%s' "${content:p+1}"; } >"$f"
      total=$((total + 1))
      if ! kc_transcript_envelope "$f"; then fast=$((fast + 1)); continue; fi
      printf '%s' "$KC_DOC" >"$d/doc"
      if ! kc_verify_kekd_signature "$d/doc" "$KC_SIG_B64" audit.pub.pem "$d"; then fast=$((fast + 1)); continue; fi
      if ! "$S/verify-transcript.sh" "$f" --kekd-key audit.pub.pem --quiet >/dev/null 2>&1; then
        full=$((full + 1))
      else
        accepted=$((accepted + 1))
        printf 'position %d: 0x%02x -> 0x%s accepted\n' "$p" "$o" "$hx" >>"$d/accepted"
      fi
    done
  done
  printf '%d %d %d %d\n' "$total" "$fast" "$full" "$accepted" >"$d/result"
}
m0=$(date +%s%N)
pids=()
for ((w = 0; w < jobs; w++)); do
  mutate_worker "$w" "$jobs" &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || true; done
total=0 fast=0 full=0 accepted=0
for ((w = 0; w < jobs; w++)); do
  read -r a b c e <"$W/mut$w/result" || { a=0 b=0 c=0 e=1; }
  total=$((total + a)) fast=$((fast + b)) full=$((full + c)) accepted=$((accepted + e))
done
ms=$((($(date +%s%N) - m0) / 1000000))
if ((total == 4 * len && accepted == 0 && total > 0)); then
  ok "all $total single-byte changes ($len positions x 4 bytes) rejected ($fast by the envelope/signature checks, $full by the full verifier) in ${ms} ms"
else
  bad "single-byte changes: $total tried (expected $((4 * len))), $accepted accepted" "$(cat "$W"/mut*/accepted 2>/dev/null)"
fi
# The full verifier on a sample of changes: exit 1 and a named check each time.
sample_ok=0 sample_n=0
for ((p = 0; p < len; p += 97)); do
  printf -v o '%d' "'${content:p:1}"
  printf -v hx '%02x' $((o ^ 1))
  { printf '%s' "${content:0:p}"; printf "\\x$hx"; printf '%s' "${content:p+1}"; } >sample.json
  sample_n=$((sample_n + 1))
  rc=0
  "$S/verify-transcript.sh" sample.json --kekd-key audit.pub.pem >"$W/out" 2>&1 || rc=$?
  ((rc == 1)) && grep -q 'FAILED check "' "$W/out" && sample_ok=$((sample_ok + 1))
done
if ((sample_ok == sample_n)); then ok "full verifier rejects a sample of $sample_n changed files, naming the check"; else bad "full verifier sample: $sample_ok of $sample_n rejected"; fi

echo "# propose.sh (dry run), approve.sh input, network errors"
cat >ops.toml <<EOF
# genesis operators
[[operator]]
name = "alice"
public_key = "keys/alice.pub.pem"   # path relative to this file

[[operator]]
name = 'bob'
public_key = """
$(cat keys/bob.pub.pem)
"""

[[operator]]
name = "carol"
public_key = "$(awk '{printf "%s\\n", $0}' keys/carol.pub.pem)"
EOF
rc=0
"$S/propose.sh" set-operators --operators ops.toml --threshold 2 --dry-run >body.json 2>"$W/out" || rc=$?
want=$(for n in alice bob carol; do openssl pkey -pubin -in "keys/$n.pub.pem"; done)
got=$(jq -r '.operators[].public_key' body.json 2>/dev/null | sed '/^$/d' || true)
if ((rc == 0)) && [[ $(jq -c '[.action, [.operators[].name], .threshold, .force]' body.json) == '["set-operators",["alice","bob","carol"],2,false]' && $got == "$want" ]]; then
  ok "propose.sh reads a TOML operators file (path, multi-line and escaped inline PEM)"
else
  bad "propose.sh --operators ops.toml (exit $rc)" "$(cat "$W/out" body.json)"
fi
expect_fail "propose.sh refuses threshold 1 with 3 operators without --force" "add --force" \
  "$S/propose.sh" set-operators --operators ops.toml --threshold 1 --dry-run
expect_fail "propose.sh refuses two operators with the same key" "same public key" \
  "$S/propose.sh" set-operators --operator alice=keys/alice.pub.pem --operator zed=keys/alice.pub.pem --threshold 2 --dry-run
expect_ok "propose.sh --dry-run schedule-destroy-version" "$S/propose.sh" schedule-destroy-version payments \
  --version 1 --destroy-after 2026-12-23T10:00:00Z --dry-run
expect_fail "approve.sh: unreachable kekd is a clear error" "cannot reach kekd" \
  env KEKD_ADDR=http://127.0.0.1:9 "$S/approve.sh" "$id1" alice "statement-$id1.alice.sig"
expect_fail "status.sh: unreachable kekd is a clear error" "cannot reach kekd" \
  env KEKD_ADDR=http://127.0.0.1:9 "$S/status.sh" "$id1"
if kc_sig_file_to_b64 "statement-$id1.bob.sig.bin" && [[ $KC_B64 == "$(tr -d '\n' <"statement-$id1.bob.sig")" ]] &&
  kc_sig_file_to_b64 "statement-$id1.bob.sig" && [[ $KC_B64 == "$(tr -d '\n' <"statement-$id1.bob.sig")" ]]; then
  ok "approve.sh accepts base64 and raw binary (pkcs11-tool) signature files alike"
else
  bad "signature file reading: $KC_ERR"
fi

echo "# smartcard signing through pkcs11-tool (SoftHSM)"
module=/usr/lib/softhsm/libsofthsm2.so
if command -v pkcs11-tool >/dev/null && command -v softhsm2-util >/dev/null && [[ -r $module && -x $here/../softhsm-token.sh ]]; then
  export SOFTHSM2_CONF
  eval "$("$here/../softhsm-token.sh" "$W/token" selftest)"
  p11=(pkcs11-tool --module "$module" --token-label selftest)
  pinfile="$W/token/pin"
  # Test code with a throwaway token: the PIN is passed with --pin. Operators type it at the
  # prompt instead (--login without --pin), or on the reader's PIN pad.
  p11pin() { "${p11[@]}" --login --pin "$(cat "$pinfile")" "$@"; }
  if p11pin --keypair --key-type EC:prime256v1 --id 01 --label frank >/dev/null 2>&1 &&
    "${p11[@]}" --read-object --type pubkey --id 01 -o frank.pub.der >/dev/null 2>&1 &&
    openssl pkey -pubin -in frank.pub.der -out keys/frank.pub.pem 2>/dev/null &&
    openssl dgst -sha256 -binary -out "statement-$id1.sha256" "statement-$id1.txt" &&
    p11pin --sign --id 01 -m ECDSA --signature-format openssl -i "statement-$id1.sha256" -o frank.sig.der >/dev/null 2>&1 &&
    openssl dgst -sha256 -verify keys/frank.pub.pem -signature frank.sig.der "statement-$id1.txt" >/dev/null 2>&1; then
    ok "pkcs11-tool --sign -m ECDSA --signature-format openssl over SHA-256: openssl verifies it"
  else
    bad "pkcs11-tool ECDSA signing"
  fi
  if p11pin --keypair --key-type EC:edwards25519 --id 02 --label grace >/dev/null 2>&1 &&
    "${p11[@]}" --read-object --type pubkey --id 02 -o grace.pub >/dev/null 2>&1 &&
    { openssl pkey -pubin -in grace.pub -out keys/grace.pub.pem 2>/dev/null ||
      openssl pkey -pubin -inform DER -in grace.pub -out keys/grace.pub.pem 2>/dev/null; } &&
    p11pin --sign --id 02 -m EDDSA -i "statement-$id1.txt" -o grace.sig >/dev/null 2>&1 &&
    openssl pkeyutl -verify -pubin -inkey keys/grace.pub.pem -rawin -in "statement-$id1.txt" -sigfile grace.sig >/dev/null 2>&1; then
    ok "pkcs11-tool --sign -m EDDSA: openssl verifies the raw Ed25519 signature"
    have_eddsa=1
  else
    bad "pkcs11-tool EdDSA signing"
    have_eddsa=0
  fi
  # The smartcard operators in a transcript: set frank (card ECDSA), grace (card EdDSA), alice.
  ALG[frank]=ecdsa-p256 ALG[grace]=ed25519
  if ((have_eddsa)); then
    {
      printf 'kekd operator-set v1\nthreshold: 2\n'
      for n in alice frank grace; do printf 'operator: %s %s %s\n' "$n" "${ALG[$n]}" "$(spki_b64 "keys/$n.pub.pem")"; done
    } >set.card
    sethash_saved=$sethash
    sethash="sha256:$(sha256sum <set.card | cut -c1-64)"
    id4=$(rand_id)
    mkstatement "$id4" rotate-key payments >"statement-$id4.txt"
    sethash=$sethash_saved
    openssl dgst -sha256 -binary -out "statement-$id4.sha256" "statement-$id4.txt"
    p11pin --sign --id 01 -m ECDSA --signature-format openssl -i "statement-$id4.sha256" -o f4.sig >/dev/null 2>&1 || true
    p11pin --sign --id 02 -m EDDSA -i "statement-$id4.txt" -o g4.sig >/dev/null 2>&1 || true
    kc_sig_file_to_b64 f4.sig && fb=$KC_B64 || fb=x
    kc_sig_file_to_b64 g4.sig && gb=$KC_B64 || gb=x
    printf 'approval: frank 2026-11-23T10:05:00Z %s\napproval: grace 2026-11-23T10:06:00Z %s\n' "$fb" "$gb" >ap.card
    mktranscript card.json "$id4" "statement-$id4.txt" set.card ap.card \
      $'state: executed\nfinished-at: 2026-11-23T10:06:01Z\nresult: rotated key payments to version 2\n'
    expect_ok "a transcript approved with smartcard signatures (ECDSA and EdDSA) verifies" \
      "$S/verify-transcript.sh" card.json --kekd-key audit.pub.pem --operator frank=keys/frank.pub.pem --operator grace=keys/grace.pub.pem
  fi
else
  echo "skip: pkcs11-tool, softhsm2-util or $module not installed"
fi

elapsed=$((($(date +%s%N) - started) / 1000000))
echo "# finished in $((elapsed / 1000)).$(printf '%03d' $((elapsed % 1000))) s"
echo "$passed passed, $failed failed"
((failed == 0))
