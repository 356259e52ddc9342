#!/usr/bin/env bash
# Verifies a ceremony transcript offline. See --help.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

usage() {
  cat <<'EOF'
Usage: verify-transcript.sh TRANSCRIPT.json --kekd-key AUDIT_PUBLIC.pem [--operator NAME=PEMFILE ...]
                            [--id ID] [--quiet]

Verifies a kekd ceremony transcript offline (no network; bash, jq, openssl), with every check of
docs/ceremony-formats.md, "The transcript":
  1. the file is exactly its jq -c form: {"document":...,"signature":...} and one LF
  2. kekd's ECDSA P-256 signature over the document, with the audit public key you trust
  3. the document's signer fingerprint is that key's fingerprint
  4. the document layout; the statement is a well-formed kekd ceremony v1 statement for this
     ceremony id
  5. the operator-set section is a canonical operator set, it hashes to the statement's
     operator-set: and has the statement's threshold
  6. every approval: a member of that set, no operator twice, timed between proposal and
     expiry, and its signature verifies over the statement with that operator's key
  7. the outcome section; for state executed, at least threshold approvals
  8. with --operator NAME=PEMFILE: NAME's key in the operator-set section is exactly PEMFILE
     (your own trusted copy of that operator's public key); repeat for each operator you know

  --kekd-key PEM        kekd's audit public key (audit-key.sh; compare its fingerprint with the
                        one recorded at kekd init)
  --operator NAME=PEM   pin an operator's public key (repeatable)
  --id ID               also require that the transcript is for ceremony ID
  --quiet               print only the final line (or the failure)
  -h, --help

Prints each check as it passes and, at the end,
  transcript verified: <id> <state> (<n> of <m> approvals)
On failure, names the failing check on stderr and exits 1 (2 for a usage error).
EOF
}

file="" kekd_key="" want_id="" quiet=0
pins=()
kc_split_eq "$@"
set -- "${KC_ARGS[@]+"${KC_ARGS[@]}"}"
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --kekd-key) kc_needval "$@"; kekd_key=$2; shift 2 ;;
    --operator) kc_needval "$@"; pins+=("$2"); shift 2 ;;
    --id) kc_needval "$@"; want_id=$2; shift 2 ;;
    --quiet) quiet=1; shift ;;
    -*) kc_usage_error "unknown option $1" ;;
    *) [[ -z $file ]] || kc_usage_error "unexpected argument '$1'"; file=$1; shift ;;
  esac
done
[[ -n $file ]] || kc_usage_error "missing TRANSCRIPT.json"
[[ -n $kekd_key ]] || kc_usage_error "missing --kekd-key AUDIT_PUBLIC.pem (kekd's audit public key)"
[[ -z $want_id || $want_id =~ $KC_RE_ID ]] || kc_usage_error "--id needs a ceremony id (32 lowercase hex digits)"
for p in "${pins[@]+"${pins[@]}"}"; do
  [[ $p == ?*=?* ]] || kc_usage_error "--operator wants NAME=PEMFILE, got '$p'"
done
kc_need jq openssl sha256sum base64 cmp
kc_tmpdir
T=$KC_TMP

fail() { # CHECK REASON
  printf '%s: FAILED check "%s": %s\n' "$KC_PROG" "$1" "$2" >&2
  printf 'transcript NOT verified: %s\n' "$file" >&2
  exit 1
}
pass() { ((quiet)) || printf 'ok  %-28s %s\n' "$1" "${2-}"; }

# --- 0. the audit key we trust ---------------------------------------------------------------
c="audit public key"
[[ -r $kekd_key ]] || fail "$c" "cannot read $kekd_key"
kc_pub_algorithm "$kekd_key" || fail "$c" "$KC_ERR"
[[ $KC_ALG == ecdsa-p256 ]] || fail "$c" "$kekd_key is $KC_ALG, kekd's audit key is ECDSA P-256"
kc_pub_der "$kekd_key" "$T/audit.der" || fail "$c" "$KC_ERR"
openssl pkey -pubin -inform DER -in "$T/audit.der" -out "$T/audit.pem" 2>/dev/null || fail "$c" "cannot convert $kekd_key"
audit_fp=$(kc_fingerprint "$T/audit.der")
pass "$c" "$audit_fp"

# --- 1. the file is exactly its jq -c form ---------------------------------------------------
c="canonical JSON (jq -c form)"
kc_transcript_envelope "$file" || fail "$c" "$KC_ERR"
jq -c . "$file" >"$T/canon.json" 2>/dev/null || fail "$c" "jq cannot parse $file"
cmp -s "$T/canon.json" "$file" || fail "$c" "the file differs from its jq -c form"
[[ $(jq -c 'keys_unsorted' "$file") == '["document","signature"]' ]] ||
  fail "$c" 'the members are not exactly "document" then "signature"'
pass "$c" "$(wc -c <"$file") bytes"

# --- 2. kekd's signature over the document ---------------------------------------------------
c="kekd signature"
printf '%s' "$KC_DOC" >"$T/document"
kc_verify_kekd_signature "$T/document" "$KC_SIG_B64" "$T/audit.pem" "$T" || fail "$c" "$KC_ERR"
pass "$c" "ECDSA P-256 over the document verifies"

# --- 3. layout and signer --------------------------------------------------------------------
c="document layout"
doc=$KC_DOC
# Trailing spaces are tolerated at this level only: kekd's one-line result: text may end in one
# (the statement and operator-set sections are checked strictly below).
kc_check_lines "$doc" "the document" 1 || fail "$c" "$KC_ERR"
kc_lines "$doc" L
nl=${#L[@]}
[[ ${L[0]} == "kekd transcript v1" ]] || fail "$c" "first line is not 'kekd transcript v1'"
[[ $nl -ge 4 && ${L[1]} =~ ^ceremony:\ ([0-9a-f]{32})$ ]] || fail "$c" "line 2 is not 'ceremony: <id>'"
cid=${BASH_REMATCH[1]}
[[ ${L[2]} =~ ^signer:\ (sha256:[0-9a-f]{64})$ ]] || fail "$c" "line 3 is not 'signer: sha256:<hex>'"
signer=${BASH_REMATCH[1]}
markers=()
for ((j = 3; j < nl; j++)); do [[ ${L[j]} != "--- "* ]] || markers+=("$j"); done
[[ ${#markers[@]} -eq 4 ]] || fail "$c" "expected the 4 sections statement, operator-set, approvals, outcome; found ${#markers[@]} '--- ' lines"
s_st=${markers[0]} s_os=${markers[1]} s_ap=${markers[2]} s_out=${markers[3]}
[[ $s_st -eq 3 && ${L[s_st]} == "--- statement" && ${L[s_os]} == "--- operator-set" &&
  ${L[s_ap]} == "--- approvals" && ${L[s_out]} == "--- outcome" ]] ||
  fail "$c" "sections are not '--- statement', '--- operator-set', '--- approvals', '--- outcome' in this order, right after the header"
pass "$c" "ceremony $cid"

c="signer fingerprint"
[[ $signer == "$audit_fp" ]] || fail "$c" "the document names signer $signer, the given audit key is $audit_fp"
pass "$c" "$signer"

# --- 4. the statement --------------------------------------------------------------------------
c="statement"
statement=$(printf '%s\n' "${L[@]:s_st+1:s_os-s_st-1}"; echo x)
statement=${statement%x}
((s_os > s_st + 1)) || fail "$c" "the statement section is empty"
kc_parse_statement "$statement" || fail "$c" "$KC_ERR"
[[ ${KS[id]} == "$cid" ]] || fail "$c" "the statement is for ceremony ${KS[id]}, the transcript for $cid"
[[ -z $want_id || $cid == "$want_id" ]] || fail "$c" "the transcript is for ceremony $cid, not the expected $want_id"
printf '%s' "$statement" >"$T/statement"
what="${KS[action]}${KS[key]:+ ${KS[key]}}${KS[version]:+ version ${KS[version]}}"
pass "$c" "well-formed: $what, proposed ${KS[proposed-at]} by ${KS[proposed-by]}"

# --- 5. the operator set -----------------------------------------------------------------------
c="operator set"
((s_ap > s_os + 1)) || fail "$c" "the operator-set section is empty"
opset=$(printf '%s\n' "${L[@]:s_os+1:s_ap-s_os-1}"; echo x)
opset=${opset%x}
kc_parse_opset "$opset" || fail "$c" "$KC_ERR"
set_hash="sha256:$(kc_sha256_text "$opset")"
[[ $set_hash == "${KS[operator-set]}" ]] ||
  fail "$c" "the operator-set section hashes to $set_hash, the statement names ${KS[operator-set]}"
[[ $KO_THRESHOLD == "${KS[threshold]}" ]] ||
  fail "$c" "the set's threshold is $KO_THRESHOLD, the statement's ${KS[threshold]}"
declare -A OPALG=()
mkdir "$T/ops"
for j in "${!KO_NAMES[@]}"; do
  kc_load_operator_key "${KO_NAMES[j]}" "${KO_ALGS[j]}" "${KO_KEYS[j]}" "$T/ops" || fail "$c" "$KC_ERR"
  OPALG[${KO_NAMES[j]}]=${KO_ALGS[j]}
done
pass "$c" "${KO_THRESHOLD} of ${#KO_NAMES[@]} (${KO_NAMES[*]}), $set_hash"

# --- 8 (early: before trusting any approval). pinned operator keys -------------------------------
c="pinned operator keys"
if ((${#pins[@]})); then
  for p in "${pins[@]}"; do
    pn=${p%%=*} pf=${p#*=}
    [[ -n ${OPALG[$pn]-} ]] || fail "$c" "operator $pn is not in the transcript's operator set"
    kc_pub_der "$pf" "$T/pin.der" || fail "$c" "$KC_ERR"
    cmp -s "$T/pin.der" "$T/ops/$pn.der" ||
      fail "$c" "the transcript's key for $pn ($(kc_fingerprint "$T/ops/$pn.der")) is not $pf ($(kc_fingerprint "$T/pin.der"))"
    pass "$c" "$pn = $pf"
  done
fi

# --- 6. approvals ------------------------------------------------------------------------------
c="approvals"
re_ap='^approval: ([a-z0-9][a-z0-9_.-]{0,63}) ([0-9T:Z-]+) ([A-Za-z0-9+/=]+)$'
declare -A seen=()
napp=0
for ((j = s_ap + 1; j < s_out; j++)); do
  line=${L[j]}
  [[ $line =~ $re_ap ]] || fail "$c" "malformed approval line '${line:0:100}'"
  an=${BASH_REMATCH[1]} at=${BASH_REMATCH[2]} asig=${BASH_REMATCH[3]}
  napp=$((napp + 1))
  [[ $at =~ $KC_RE_TIME ]] || fail "$c" "approval $napp ($an): invalid time '$at'"
  [[ -n ${OPALG[$an]-} ]] || fail "$c" "approval $napp: '$an' is not in the operator set"
  [[ -z ${seen[$an]-} ]] || fail "$c" "operator $an approves twice"
  seen[$an]=1
  [[ ! $at < ${KS[proposed-at]} && ! $at > ${KS[expires-at]} ]] ||
    fail "$c" "approval $napp ($an) at $at is outside ${KS[proposed-at]} .. ${KS[expires-at]}"
  kc_b64_decode "$asig" "$T/a.sig" || fail "$c" "approval $napp ($an): signature $KC_ERR"
  kc_verify_sig "${OPALG[$an]}" "$T/ops/$an.pem" "$T/statement" "$T/a.sig" ||
    fail "$c" "approval $napp: $an's ${OPALG[$an]} signature does not verify over this statement"
  pass "approval $napp" "$an (${OPALG[$an]}) at $at: signature valid"
done

# --- 7. outcome --------------------------------------------------------------------------------
c="outcome"
k=$((s_out + 1))
((k < nl)) || fail "$c" "the outcome section is empty"
[[ ${L[k]} =~ ^state:\ (open|executed|cancelled|expired|failed)$ ]] || fail "$c" "invalid state line '${L[k]:0:80}'"
state=${BASH_REMATCH[1]}
k=$((k + 1))
finished="" result=""
if ((k < nl)) && [[ ${L[k]} == "finished-at: "* ]]; then
  finished=${L[k]#finished-at: }
  [[ $finished =~ $KC_RE_TIME ]] || fail "$c" "invalid finished-at '$finished'"
  [[ ! $finished < ${KS[proposed-at]} ]] || fail "$c" "finished-at $finished is before proposed-at ${KS[proposed-at]}"
  k=$((k + 1))
fi
if ((k < nl)) && [[ ${L[k]} == "result: "* ]]; then
  result=${L[k]#result: }
  k=$((k + 1))
fi
((k == nl)) || fail "$c" "unexpected line '${L[k]:0:80}' in the outcome section"
if [[ $state == open ]]; then
  [[ -z $finished && -z $result ]] || fail "$c" "an open ceremony has no finished-at or result"
else
  [[ -n $finished ]] || fail "$c" "a $state ceremony must have finished-at"
fi
pass "$c" "$state${finished:+ at $finished}${result:+: $result}"

c="threshold"
if [[ $state == executed ]]; then
  ((napp >= KS[threshold])) || fail "$c" "executed with $napp approvals, the threshold is ${KS[threshold]}"
  pass "$c" "$napp approvals >= threshold ${KS[threshold]}"
fi

printf 'transcript verified: %s %s (%s of %s approvals)\n' "$cid" "$state" "$napp" "${KS[threshold]}"
