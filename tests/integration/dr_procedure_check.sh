#!/usr/bin/env bash
# End-to-end check of the disaster-recovery procedure in docs/ciphertext.md.
#
#   tests/integration/dr_procedure_check.sh
#
# Makes fresh SoftHSM tokens in a temporary directory, creates KEKs with the DESIGN section 3
# template and ciphertexts with tests/integration/pkcs11_helper.py (python3-pykcs11, independent of
# kekd), then runs the document's ```sh blocks verbatim through run_doc_procedure.sh and compares
# the recovered DEK. Also checks that no recovered object stays in the token and that only dek.bin
# stays in WORK_DIR. Exits 0 only if every case passes; the last line is "N passed, M failed".
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
doc=${KEKD_DR_DOC:-$root/docs/ciphertext.md}  # override only to test this check itself
runner="$here/run_doc_procedure.sh"
py=/usr/bin/python3
helper=("$py" "$here/pkcs11_helper.py")

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kekd-dr-check.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }

export PKCS11_MODULE=/usr/lib/softhsm/libsofthsm2.so
export TOKEN_LABEL=kekd

use_token() { # DIR: create (or reuse) the token in DIR and select it
  eval "$("$root/scripts/softhsm-token.sh" "$1" "$TOKEN_LABEL")"
  export SOFTHSM2_CONF PIN_FILE="$1/pin"
}

random_hex() { head -c "$1" /dev/urandom | od -An -tx1 -v | tr -d ' \n'; }

# Counts the token's objects; every case must leave exactly the KEKs behind.
object_count() { "${helper[@]}" list-objects | wc -l; }

# run_case CIPHERTEXT_B64 CONTEXT_HEX: runs the documented procedure in a fresh WORK_DIR;
# sets out, err, status, work.
run_case() {
  work=$(mktemp -d "$tmp/work.XXXXXX")
  status=0
  CIPHERTEXT_B64=$1 CONTEXT_HEX=$2 WORK_DIR=$work \
    "$runner" "$doc" >"$tmp/out" 2>"$tmp/err" || status=$?
  out=$(cat "$tmp/out")
  err=$(cat "$tmp/err")
}

# expect_dek NAME DEK_HEX OBJECTS_BEFORE: the procedure succeeded and recovered DEK_HEX.
expect_dek() {
  local name=$1 dek=$2 before=$3 problems=()
  [ "$status" = 0 ] || problems+=("exit status $status")
  [ "$(tail -n1 <<<"$out")" = "DEK: $dek" ] || problems+=("last line is '$(tail -n1 <<<"$out")'")
  [ -f "$work/dek.bin" ] && [ "$(od -An -tx1 -v "$work/dek.bin" | tr -d ' \n')" = "$dek" ] \
    || problems+=("dek.bin does not hold the DEK")
  [ "$(ls -A "$work")" = dek.bin ] || problems+=("WORK_DIR holds: $(ls -A "$work" | tr '\n' ' ')")
  [ "$(object_count)" = "$before" ] || problems+=("token object count changed")
  if [ ${#problems[@]} = 0 ]; then ok "$name"; else
    fail "$name: ${problems[*]}"
    sed 's/^/    | /' <<<"$err"
  fi
}

# expect_stop NAME MESSAGE_PART OBJECTS_BEFORE: the procedure stopped with a STOP: line containing
# MESSAGE_PART, a non-zero status, no DEK, and nothing left behind.
expect_stop() {
  local name=$1 msg=$2 before=$3 problems=()
  [ "$status" != 0 ] || problems+=("exit status 0")
  grep -q "^STOP: .*$msg" <<<"$err" || problems+=("no 'STOP: ...$msg' message")
  ! grep -q '^DEK: ' <<<"$out" || problems+=("printed a DEK")
  [ -z "$(ls -A "$work")" ] || problems+=("WORK_DIR holds: $(ls -A "$work" | tr '\n' ' ')")
  [ "$(object_count)" = "$before" ] || problems+=("token object count changed")
  if [ ${#problems[@]} = 0 ]; then ok "$name ($(grep -m1 '^STOP: ' <<<"$err" | cut -c1-80)...)"; else
    fail "$name: ${problems[*]}"
    sed 's/^/    | /' <<<"$err"
  fi
}

echo "== token with generated KEKs (DESIGN section 3 template)"
use_token "$tmp/token"
# Decoys: another key and another version of the same key, created first so that "first secret key"
# or a sloppy label match would pick the wrong KEK.
for label in kekd:other:1 kekd:payments:1 kekd:payments:2 kekd:payments:12; do
  "${helper[@]}" create-kek --label "$label" >/dev/null
done
for label in kekd:other:1 kekd:payments:1 kekd:payments:2 kekd:payments:12; do
  if "${helper[@]}" check-kek --label "$label" >"$tmp/check" 2>&1; then ok "check-kek $label"
  else fail "check-kek $label"; grep -v '^ok' "$tmp/check" | sed 's/^/    | /'; fi
done
kek_objects=$(object_count)

ctx_empty=""
ctx_acme=$("${helper[@]}" canonical-context tenant=acme purpose=card)
ctx_other=$("${helper[@]}" canonical-context tenant=acme purpose=card extra=1)

for n in 1 20 32 982; do
  for ctx_name in empty acme; do
    ctx_var=ctx_$ctx_name
    ctx=${!ctx_var}
    dek=$(random_hex "$n")
    ct=$("${helper[@]}" wrap --label kekd:payments:2 --plaintext-hex "$dek" --context-hex "$ctx")
    run_case "$ct" "$ctx"
    expect_dek "DEK of $n bytes, $ctx_name context, kekd:payments:2" "$dek" "$kek_objects"
  done
done

dek=$(random_hex 32)
ct=$("${helper[@]}" wrap --label kekd:payments:1 --plaintext-hex "$dek" --context-hex "$ctx_acme")
run_case "$ct" "$ctx_acme"
expect_dek "DEK under version 1 while versions 2 and 12 exist" "$dek" "$kek_objects"
run_case "$ct" "$ctx_other"
expect_stop "wrong context (extra pair) stops" "encryption context mismatch" "$kek_objects"
run_case "$ct" "$ctx_empty"
expect_stop "wrong context (none given) stops" "encryption context mismatch" "$kek_objects"

# Tampering: flip one bit in the last byte of the wrapped part.
raw="$tmp/ct.bin"
base64 -d <<<"$ct" >"$raw"
last=$(( $(od -An -tu1 -j $(( $(wc -c <"$raw") - 1 )) -N1 "$raw") ^ 1 ))
printf "\\x$(printf '%02x' "$last")" | dd of="$raw" bs=1 seek=$(( $(wc -c <"$raw") - 1 )) conv=notrunc status=none
run_case "$(base64 -w0 "$raw")" "$ctx_acme"
expect_stop "tampered ciphertext stops" "refused to unwrap" "$kek_objects"

# The header names version 2, the bytes were wrapped under version 1.
base64 -d <<<"$ct" >"$raw"
printf '\x02' | dd of="$raw" bs=1 seek=13 conv=notrunc status=none
run_case "$(base64 -w0 "$raw")" "$ctx_acme"
expect_stop "ciphertext relabelled to another key version stops" "refused to unwrap" "$kek_objects"

run_case "$("${helper[@]}" wrap --label kekd:payments:1 --plaintext-hex 00 | base64 -d | { printf '\x02'; tail -c +2; } | base64 -w0)" ""
expect_stop "unknown format byte stops" "format byte is 2" "$kek_objects"

ct=$("${helper[@]}" wrap --label kekd:payments:1 --plaintext-hex 00)
raw_name=$(base64 -d <<<"$ct" | { printf '\x01\x07kekd-gn\x00\x00\x00\x01'; tail -c +15; } | base64 -w0)
run_case "$raw_name" ""
expect_stop "unknown key stops" "need exactly 1" "$kek_objects"

# pkcs11-tool 0.23 passes only 1024 bytes of wrapped input: longer DEKs must stop with a clear
# message (not a misleading "tampered"), and the documented fallback must recover them.
for n in 983 4096; do
  dek=$(random_hex "$n")
  ct=$("${helper[@]}" wrap --label kekd:payments:2 --plaintext-hex "$dek" --context-hex "$ctx_acme")
  run_case "$ct" "$ctx_acme"
  expect_stop "DEK of $n bytes stops at pkcs11-tool 0.23's 1024-byte limit" "passes only the first 1024 bytes" "$kek_objects"
  if [ "$("${helper[@]}" unwrap --ciphertext-b64 "$ct" --context-hex "$ctx_acme")" = "$dek" ] \
      && [ "$(object_count)" = "$kek_objects" ]; then
    ok "DEK of $n bytes recovered by the documented fallback (pkcs11_helper.py unwrap)"
  else fail "DEK of $n bytes: documented fallback"; fi
done

echo "== worked example of docs/ciphertext.md (KEK of known value, separate token)"
use_token "$tmp/example-token"
example_kek=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
example_dek=a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3
example_ct=AQhwYXltZW50cwAAAAFFrYGuK8XJzIrlTTykOKJk5+udVKNGhnqlRVc3I6lkxEjLeir6CvCFixUHch+Gw1MON1295VPs2IOVK8sOC1xd
"${helper[@]}" import-kek --label kekd:payments:1 --value-hex "$example_kek" >/dev/null
example_ctx=$("${helper[@]}" canonical-context tenant=acme purpose=card)
if grep -qF "$example_ct" "$doc" && grep -qF "$example_ctx" "$doc"; then ok "document shows the example ciphertext and context"
else fail "document does not show the example ciphertext or context"; fi
made=$("${helper[@]}" wrap --label kekd:payments:1 --plaintext-hex "$example_dek" --context-hex "$example_ctx")
if [ "$made" = "$example_ct" ]; then ok "SoftHSM reproduces the example ciphertext"
else fail "SoftHSM makes $made, the document shows $example_ct"; fi
payload=$("${helper[@]}" wrap --label kekd:payments:1 --plaintext-hex "$example_dek" --context-hex "$example_ctx" --parts | sed -n 's/^payload_hex=//p')
oracle=$(printf '%s' "$payload" | sed 's/../\\x&/g' | xargs -0 printf \
  | openssl enc -id-aes256-wrap-pad -K "$example_kek" -iv A65959A6 | od -An -tx1 -v | tr -d ' \n')
if [ "$(base64 -d <<<"$example_ct" | tail -c +15 | od -An -tx1 -v | tr -d ' \n')" = "$oracle" ]; then
  ok "openssl -id-aes256-wrap-pad (RFC 5649) oracle equals SoftHSM's wrap"
else fail "openssl oracle differs from SoftHSM"; fi
example_objects=$(object_count)
run_case "$example_ct" "$example_ctx"
expect_dek "procedure recovers the example DEK" "$example_dek" "$example_objects"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
