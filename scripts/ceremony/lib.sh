# shellcheck shell=bash
# shellcheck disable=SC2034  # variables here are used by the scripts that source this file
# Shared helpers for scripts/ceremony/*.sh. Sourced, never run directly.
#
# Everything here needs only bash, coreutils, curl, jq and openssl 3. Formats follow
# docs/ceremony-formats.md (statement, canonical operator set, transcript) exactly.
#
# Conventions:
#   kc_die MSG        print "<script>: error: MSG" on stderr and exit 1
#   parsers           return 1 and leave the reason in KC_ERR instead of dying, so that
#                     verify-transcript.sh can name the failing check
#   no private key    is ever printed, logged or copied: keys are only handed to openssl by path

export LC_ALL=C          # byte semantics for regexes, sorting and string lengths
umask 077                # anything we create (signatures, temp files) is private by default

KC_PROG=${KC_PROG:-$(basename "$0")}
KC_ERR=""

kc_die() { printf '%s: error: %s\n' "$KC_PROG" "$*" >&2; exit 1; }
kc_warn() { printf '%s: warning: %s\n' "$KC_PROG" "$*" >&2; }
kc_note() { printf '%s\n' "$*" >&2; }

# kc_usage_error MSG: a command-line mistake (exit 2, points at --help).
kc_usage_error() {
  printf '%s: %s\n' "$KC_PROG" "$*" >&2
  printf "Run '%s --help' for usage.\n" "$KC_PROG" >&2
  exit 2
}

kc_need() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 ||
      kc_die "required command '$c' not found (these scripts need bash, coreutils, curl, jq and openssl 3)"
  done
}

# A private temporary directory, removed on exit. Sets KC_TMP.
kc_tmpdir() {
  if [[ -z ${KC_TMP:-} ]]; then
    KC_TMP=$(mktemp -d "${TMPDIR:-/tmp}/kekd-ceremony.XXXXXXXX") || kc_die "cannot create a temporary directory"
    trap 'rm -rf -- "$KC_TMP"' EXIT
  fi
}

# kc_split_eq ARGS...: rewrites "--opt=value" into "--opt" "value"; result in KC_ARGS.
kc_split_eq() {
  KC_ARGS=()
  local a
  for a in "$@"; do
    if [[ $a == --?*=* ]]; then KC_ARGS+=("${a%%=*}" "${a#*=}"); else KC_ARGS+=("$a"); fi
  done
}

# kc_needval OPT VALUE...: usage error unless OPT is followed by a non-empty value.
kc_needval() {
  [[ $# -ge 2 && -n ${2-} ]] || kc_usage_error "option $1 needs a value"
}

# ---------------------------------------------------------------------------------------------
# Formats

KC_RE_ID='^[0-9a-f]{32}$'
KC_RE_KEY='^[a-z0-9][a-z0-9_-]{0,63}$'
KC_RE_OPNAME='^[a-z0-9][a-z0-9_.-]{0,63}$'
KC_RE_UINT='^[1-9][0-9]{0,8}$'
KC_RE_TIME='^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z$'
KC_RE_HASH='^sha256:[0-9a-f]{64}$'
# Canonical standard base64 with padding: unused bits of the last character must be zero, so a
# string decodes to exactly one byte string and one byte string encodes to exactly one string.
KC_RE_B64='^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$'
# Printable ASCII and LF only.
KC_RE_TEXT=$'^[ -~\n]*$'
# The transcript file in its jq -c form, restricted to what a transcript can contain: printable
# ASCII, the document's line breaks as \n, no other escapes. Anything else is rejected.
KC_RE_ENVELOPE=$'^[{]"document":"(([] !#-[^-~]|\\\\n)*)","signature":"([A-Za-z0-9+/=]*)"[}]\n$'

KC_ACTIONS="create-key rotate-key disable-version enable-version schedule-destroy-version cancel-destroy-version set-operators"

kc_is_action() { [[ " $KC_ACTIONS " == *" $1 "* ]]; }
kc_action_has_version() {
  case $1 in disable-version | enable-version | schedule-destroy-version | cancel-destroy-version) return 0 ;; esac
  return 1
}

# kc_read_exact FILE VAR: the file's bytes into VAR; fails (KC_ERR) on a NUL byte or a read error.
kc_read_exact() {
  local __kc_v=""
  if [[ ! -e $1 ]]; then KC_ERR="$1 does not exist"; return 1; fi
  if [[ ! -f $1 ]]; then KC_ERR="$1 is not a regular file"; return 1; fi
  if [[ ! -r $1 ]]; then KC_ERR="cannot read $1 (permissions)"; return 1; fi
  if IFS= read -r -d '' __kc_v <"$1"; then
    KC_ERR="$1 contains a NUL byte"
    return 1
  fi
  printf -v "$2" '%s' "$__kc_v"
}

# kc_check_lines TEXT WHAT [ALLOW_TRAILING_SPACE]: LF-terminated lines of printable ASCII, no CR,
# no empty line, no trailing space (unless the third argument is 1).
kc_check_lines() {
  local t=$1 what=$2 trailing_ok=${3:-0}
  if [[ -z $t ]]; then KC_ERR="$what is empty"; return 1; fi
  if [[ ! $t =~ $KC_RE_TEXT ]]; then
    KC_ERR="$what contains a byte that is not printable ASCII or LF (CR, tab, control or non-ASCII)"
    return 1
  fi
  if [[ $t != *$'\n' ]]; then KC_ERR="$what does not end with a line feed"; return 1; fi
  if [[ $t == $'\n'* || $t == *$'\n\n'* ]]; then KC_ERR="$what contains an empty line"; return 1; fi
  if ((!trailing_ok)) && [[ $t == *$' \n'* ]]; then KC_ERR="$what has a line with trailing spaces"; return 1; fi
  return 0
}

# kc_lines TEXT ARRAYNAME: split LF-terminated TEXT into lines (without the LFs).
kc_lines() {
  local t=${1%$'\n'}
  mapfile -t "$2" <<<"$t"
}

# ---------------------------------------------------------------------------------------------
# Base64

kc_b64_ok() { [[ -n $1 && $1 =~ $KC_RE_B64 ]]; }

# kc_b64_decode STRING OUTFILE: canonical base64 only.
kc_b64_decode() {
  if ! kc_b64_ok "$1"; then KC_ERR="not canonical base64 (standard alphabet, with padding)"; return 1; fi
  base64 -d <<<"$1" >"$2" 2>/dev/null || { KC_ERR="base64 does not decode"; return 1; }
}

# kc_b64_encode FILE: one line of standard base64, no newline.
kc_b64_encode() { base64 -w0 <"$1"; }

# kc_sig_file_to_b64 FILE: sets KC_B64 to a signature file as one canonical base64 string.
# Accepts the base64 text sign.sh writes (whitespace and line breaks ignored) or a raw binary
# signature (what pkcs11-tool -o writes). Fails (KC_ERR) otherwise.
kc_sig_file_to_b64() {
  local f=$1 text="" size
  KC_B64=""
  [[ -f $f && -r $f ]] || { KC_ERR="cannot read signature file $f"; return 1; }
  size=$(wc -c <"$f")
  ((size > 0)) || { KC_ERR="signature file $f is empty"; return 1; }
  ((size <= 4096)) || { KC_ERR="signature file $f is too large ($size bytes) to be a signature"; return 1; }
  if kc_read_exact "$f" text && [[ $text =~ ^[A-Za-z0-9+/=[:space:]]+$ ]]; then
    text=${text//[[:space:]]/}
    if kc_b64_ok "$text"; then KC_B64=$text; return 0; fi
    KC_ERR="signature file $f looks like base64 but is not valid (canonical, padded) base64"
    return 1
  fi
  # Binary: a DER ECDSA signature or a raw 64-byte Ed25519 signature.
  KC_B64=$(base64 -w0 <"$f")
}

# ---------------------------------------------------------------------------------------------
# Keys

# kc_key_text_algorithm TEXT: the algorithm named by `openssl pkey -text_pub` output.
kc_key_text_algorithm() {
  if [[ $1 == *"ED25519 Public-Key"* ]]; then
    KC_ALG=ed25519
  elif [[ $1 == *"ASN1 OID: prime256v1"* || $1 == *"NIST CURVE: P-256"* ]]; then
    KC_ALG=ecdsa-p256
  else
    KC_ALG=unsupported
  fi
}

# kc_pub_algorithm FILE [PEM|DER]: sets KC_ALG to ed25519, ecdsa-p256 or unsupported; fails
# (KC_ERR) if FILE is not a public key.
kc_pub_algorithm() {
  local out
  KC_ALG=""
  out=$(openssl pkey -pubin -in "$1" -inform "${2:-PEM}" -text_pub -noout 2>/dev/null) ||
    { KC_ERR="$1 is not a ${2:-PEM} public key (SubjectPublicKeyInfo)"; return 1; }
  kc_key_text_algorithm "$out"
}

# kc_priv_algorithm KEYFILE [PASSIN]: sets KC_ALG for a private key. Only the public half is
# ever printed by openssl here (-text_pub), and only into this function.
kc_priv_algorithm() {
  local out pass=()
  KC_ALG=""
  [[ -n ${2-} ]] && pass=(-passin "$2")
  if ! out=$(openssl pkey -in "$1" "${pass[@]+"${pass[@]}"}" -text_pub -noout 2>/dev/null); then
    if openssl pkey -pubin -in "$1" -noout 2>/dev/null; then
      KC_ERR="$1 is a public key; sign with your private key (NAME.key)"
    else
      KC_ERR="$1 is not a readable PEM private key (or the passphrase is wrong)"
    fi
    return 1
  fi
  kc_key_text_algorithm "$out"
}

# kc_pub_der PUBFILE OUTDER [PEM|DER]: the DER SubjectPublicKeyInfo.
kc_pub_der() {
  openssl pkey -pubin -in "$1" -inform "${3:-PEM}" -outform DER -out "$2" 2>/dev/null ||
    { KC_ERR="$1 is not a ${3:-PEM} public key (SubjectPublicKeyInfo)"; return 1; }
}

# kc_fingerprint DERFILE: sha256:<hex> of the DER SubjectPublicKeyInfo.
kc_fingerprint() {
  local h
  h=$(sha256sum <"$1") || return 1
  printf 'sha256:%s\n' "${h%% *}"
}

# kc_sha256_text TEXT: hex SHA-256 of the bytes of TEXT.
kc_sha256_text() {
  local h
  h=$(printf '%s' "$1" | sha256sum)
  printf '%s\n' "${h%% *}"
}

# kc_load_operator_key NAME ALG B64 DIR: decodes a base64 SPKI from an operator line into
# DIR/NAME.der and DIR/NAME.pem, and checks that it is a canonical encoding of a key of ALG.
kc_load_operator_key() {
  local name=$1 alg=$2 b64=$3 dir=$4
  kc_b64_decode "$b64" "$dir/$name.raw" || { KC_ERR="key of operator $name: $KC_ERR"; return 1; }
  if ! openssl pkey -pubin -inform DER -in "$dir/$name.raw" -outform DER -out "$dir/$name.der" 2>/dev/null; then
    KC_ERR="key of operator $name is not a DER SubjectPublicKeyInfo"
    return 1
  fi
  if ! cmp -s "$dir/$name.raw" "$dir/$name.der"; then
    KC_ERR="key of operator $name is not in canonical DER form"
    return 1
  fi
  openssl pkey -pubin -inform DER -in "$dir/$name.der" -out "$dir/$name.pem" 2>/dev/null ||
    { KC_ERR="key of operator $name cannot be converted to PEM"; return 1; }
  kc_pub_algorithm "$dir/$name.der" DER || return 1
  if [[ $KC_ALG != "$alg" ]]; then
    KC_ERR="operator $name is listed as $alg but the key is $KC_ALG"
    return 1
  fi
}

# kc_verify_sig ALG PUBPEM DATAFILE SIGFILE: Ed25519 (raw 64 bytes, pkeyutl -rawin) or ECDSA P-256
# (DER over SHA-256, dgst).
kc_verify_sig() {
  local alg=$1 pub=$2 data=$3 sig=$4
  case $alg in
    ed25519)
      [[ $(wc -c <"$sig") -eq 64 ]] || return 1
      openssl pkeyutl -verify -pubin -inkey "$pub" -rawin -in "$data" -sigfile "$sig" >/dev/null 2>&1
      ;;
    ecdsa-p256)
      openssl dgst -sha256 -verify "$pub" -signature "$sig" "$data" >/dev/null 2>&1
      ;;
    *) return 1 ;;
  esac
}

# ---------------------------------------------------------------------------------------------
# The statement

# kc_parse_statement TEXT: checks TEXT against docs/ceremony-formats.md ("The statement") and
# fills KS (associative: id action key version destroy-after operator-set threshold proposed-by
# proposed-at expires-at new-threshold) and KS_OP_NAMES / KS_OP_ALGS / KS_OP_KEYS (set-operators).
# Returns 1 with KC_ERR on the first problem.
declare -A KS=()
KS_OP_NAMES=() KS_OP_ALGS=() KS_OP_KEYS=()
kc_parse_statement() {
  local text=$1 i=0 n line
  local -a lines=()
  KS=() KS_OP_NAMES=() KS_OP_ALGS=() KS_OP_KEYS=()
  kc_check_lines "$text" "the statement" || return 1
  kc_lines "$text" lines
  n=${#lines[@]}

  # _field NAME REGEX: the next line must be "NAME: value" with value matching REGEX.
  _kc_st_field() {
    local name=$1 re=$2 v
    if ((i >= n)); then KC_ERR="statement ends before the '$name:' line"; return 1; fi
    line=${lines[i]}
    if [[ $line != "$name: "* ]]; then
      KC_ERR="statement line $((i + 1)) should be '$name: ...' but is '${line:0:80}'"
      return 1
    fi
    v=${line#"$name: "}
    if [[ ! $v =~ $re ]]; then
      KC_ERR="statement line $((i + 1)): invalid $name '${v:0:80}'"
      return 1
    fi
    KS[$name]=$v
    i=$((i + 1))
  }

  if [[ ${lines[0]} != "kekd ceremony v1" ]]; then
    KC_ERR="statement's first line is '${lines[0]:0:80}', expected 'kekd ceremony v1'"
    return 1
  fi
  i=1
  _kc_st_field id "$KC_RE_ID" || return 1
  _kc_st_field action '^[a-z-]+$' || return 1
  if ! kc_is_action "${KS[action]}"; then KC_ERR="statement names an unknown action '${KS[action]}'"; return 1; fi
  if [[ ${KS[action]} != set-operators ]]; then _kc_st_field key "$KC_RE_KEY" || return 1; fi
  if kc_action_has_version "${KS[action]}"; then _kc_st_field version "$KC_RE_UINT" || return 1; fi
  if [[ ${KS[action]} == schedule-destroy-version ]]; then _kc_st_field destroy-after "$KC_RE_TIME" || return 1; fi
  if [[ ${KS[action]} == set-operators ]]; then
    local re_op='^operator: ([a-z0-9][a-z0-9_.-]{0,63}) (ed25519|ecdsa-p256) ([A-Za-z0-9+/=]+)$' prev="" nm al k
    local -A seen_key=()
    while ((i < n)) && [[ ${lines[i]} == "operator: "* ]]; do
      if [[ ! ${lines[i]} =~ $re_op ]]; then
        KC_ERR="statement line $((i + 1)): malformed operator line '${lines[i]:0:100}'"
        return 1
      fi
      nm=${BASH_REMATCH[1]} al=${BASH_REMATCH[2]} k=${BASH_REMATCH[3]}
      if [[ -n $prev && ! $nm > $prev ]]; then
        KC_ERR="statement line $((i + 1)): operators are not sorted by name or a name repeats ('$nm' after '$prev')"
        return 1
      fi
      if ! kc_b64_ok "$k"; then KC_ERR="statement line $((i + 1)): the key of $nm is not canonical base64"; return 1; fi
      if [[ -n ${seen_key[$k]-} ]]; then KC_ERR="statement line $((i + 1)): the key of $nm is already used by ${seen_key[$k]}"; return 1; fi
      seen_key[$k]=$nm
      prev=$nm
      KS_OP_NAMES+=("$nm") KS_OP_ALGS+=("$al") KS_OP_KEYS+=("$k")
      i=$((i + 1))
    done
    if ((${#KS_OP_NAMES[@]} == 0)); then KC_ERR="set-operators statement lists no operator"; return 1; fi
    _kc_st_field new-threshold "$KC_RE_UINT" || return 1
    if ((KS[new-threshold] > ${#KS_OP_NAMES[@]})); then
      KC_ERR="new-threshold ${KS[new-threshold]} is larger than the ${#KS_OP_NAMES[@]} proposed operators"
      return 1
    fi
  fi
  _kc_st_field operator-set "$KC_RE_HASH" || return 1
  _kc_st_field threshold "$KC_RE_UINT" || return 1
  _kc_st_field proposed-by '^[!-~]([ -~]*[!-~])?$' || return 1
  _kc_st_field proposed-at "$KC_RE_TIME" || return 1
  _kc_st_field expires-at "$KC_RE_TIME" || return 1
  if ((i < n)); then
    KC_ERR="statement line $((i + 1)) is unexpected for action ${KS[action]}: '${lines[i]:0:80}' (wrong field order or an extra field)"
    return 1
  fi
  if [[ ! ${KS[expires-at]} > ${KS[proposed-at]} ]]; then
    KC_ERR="statement expires (${KS[expires-at]}) before it was proposed (${KS[proposed-at]})"
    return 1
  fi
  return 0
}

# kc_canonical_set THRESHOLD NAMES_ARRAY ALGS_ARRAY KEYS_ARRAY: prints the canonical operator set
# (entries must already be sorted by name).
kc_canonical_set() {
  local -n _n=$2 _a=$3 _k=$4
  local j
  printf 'kekd operator-set v1\nthreshold: %s\n' "$1"
  for j in "${!_n[@]}"; do printf 'operator: %s %s %s\n' "${_n[j]}" "${_a[j]}" "${_k[j]}"; done
}

# kc_parse_opset TEXT: checks a canonical operator set; fills KO_THRESHOLD and KO_NAMES /
# KO_ALGS / KO_KEYS.
KO_THRESHOLD="" KO_NAMES=() KO_ALGS=() KO_KEYS=()
kc_parse_opset() {
  local text=$1
  local -a lines=()
  local re_op='^operator: ([a-z0-9][a-z0-9_.-]{0,63}) (ed25519|ecdsa-p256) ([A-Za-z0-9+/=]+)$' j prev=""
  local -A seen_key=()
  KO_THRESHOLD="" KO_NAMES=() KO_ALGS=() KO_KEYS=()
  kc_check_lines "$text" "the operator set" || return 1
  kc_lines "$text" lines
  if [[ ${lines[0]} != "kekd operator-set v1" ]]; then KC_ERR="operator set does not start with 'kekd operator-set v1'"; return 1; fi
  if [[ ${#lines[@]} -lt 3 ]]; then KC_ERR="operator set has no operator"; return 1; fi
  if [[ ! ${lines[1]} =~ ^threshold:\ ([1-9][0-9]{0,8})$ ]]; then KC_ERR="operator set line 2 is not 'threshold: M'"; return 1; fi
  KO_THRESHOLD=${BASH_REMATCH[1]}
  local nm al k
  for ((j = 2; j < ${#lines[@]}; j++)); do
    if [[ ! ${lines[j]} =~ $re_op ]]; then KC_ERR="operator set line $((j + 1)) is malformed: '${lines[j]:0:100}'"; return 1; fi
    nm=${BASH_REMATCH[1]} al=${BASH_REMATCH[2]} k=${BASH_REMATCH[3]}
    if [[ -n $prev && ! $nm > $prev ]]; then
      KC_ERR="operator set is not sorted by name or a name repeats ('$nm' after '$prev')"
      return 1
    fi
    if ! kc_b64_ok "$k"; then KC_ERR="operator set: the key of $nm is not canonical base64"; return 1; fi
    if [[ -n ${seen_key[$k]-} ]]; then KC_ERR="operator set: $nm and ${seen_key[$k]} have the same key"; return 1; fi
    seen_key[$k]=$nm
    prev=$nm
    KO_NAMES+=("$nm") KO_ALGS+=("$al") KO_KEYS+=("$k")
  done
  if ((KO_THRESHOLD > ${#KO_NAMES[@]})); then KC_ERR="operator set threshold $KO_THRESHOLD exceeds its ${#KO_NAMES[@]} operators"; return 1; fi
  return 0
}

# ---------------------------------------------------------------------------------------------
# The transcript envelope (the part every single-byte change must break quickly)

# kc_transcript_envelope FILE: the file must be {"document":"...","signature":"..."} + LF in jq -c
# form (printable ASCII, only \n escapes). Sets KC_DOC (the document, real line feeds) and
# KC_SIG_B64. Pure bash, no subprocess.
kc_transcript_envelope() {
  local raw
  kc_read_exact "$1" raw || return 1
  if [[ ! $raw =~ $KC_RE_ENVELOPE ]]; then
    KC_ERR='not {"document":"...","signature":"..."} followed by one LF, in jq -c form, with a printable-ASCII document'
    return 1
  fi
  KC_DOC=${BASH_REMATCH[1]//\\n/$'\n'}
  KC_SIG_B64=${BASH_REMATCH[3]}
  if ! kc_b64_ok "$KC_SIG_B64"; then KC_ERR="signature is not canonical base64"; return 1; fi
}

# kc_verify_kekd_signature DOCFILE SIG_B64 AUDITPEM WORKDIR: kekd's ECDSA P-256 signature.
kc_verify_kekd_signature() {
  kc_b64_decode "$2" "$4/kekd.sig" || return 1
  if ! openssl dgst -sha256 -verify "$3" -signature "$4/kekd.sig" "$1" >/dev/null 2>&1; then
    KC_ERR="kekd's signature does not verify over the document with the given audit key"
    return 1
  fi
}

# ---------------------------------------------------------------------------------------------
# HTTP

KC_ADDR=${KEKD_ADDR:-http://127.0.0.1:8200}
KC_TOKEN=${KEKD_TOKEN:-}
KC_CACERT=${KEKD_CACERT:-}

# kc_net_option OPT VALUE: handles --addr, --token, --token-file, --cacert. Returns 1 if OPT is
# not one of them.
kc_net_option() {
  case $1 in
    --addr | --token | --token-file | --cacert) kc_needval "$@" ;;
    *) return 1 ;;
  esac
  case $1 in
    --addr) KC_ADDR=$2 ;;
    --token) KC_TOKEN=$2 ;;
    --token-file)
      [[ -r $2 ]] || kc_die "cannot read token file $2"
      KC_TOKEN=$(tr -d ' \t\r\n' <"$2")
      ;;
    --cacert) KC_CACERT=$2 ;;
  esac
}

KC_NET_USAGE='Connection (environment, or the option that overrides it):
  KEKD_ADDR    --addr URL        kekd base URL (default http://127.0.0.1:8200)
  KEKD_TOKEN   --token TOKEN     bearer token <client-id>.<secret> (prefer the environment:
               --token-file F    command-line arguments are visible to other local users)
  KEKD_CACERT  --cacert PEM      CA certificate for https:// (default: system trust store)'

kc_net_check() {
  KC_ADDR=${KC_ADDR%/}
  [[ $KC_ADDR =~ ^https?://[^/[:space:]]+$ ]] ||
    kc_die "kekd address '$KC_ADDR' is not http(s)://host[:port] (set KEKD_ADDR or --addr)"
  [[ $KC_TOKEN != *[[:space:]\"\\]* ]] || kc_die "the bearer token contains whitespace, a quote or a backslash"
  if [[ -n $KC_CACERT && ! -r $KC_CACERT ]]; then kc_die "cannot read CA certificate $KC_CACERT"; fi
  if [[ $KC_ADDR == http://* && -n $KC_TOKEN ]]; then
    local host=${KC_ADDR#http://}
    host=${host%:*}
    case $host in
      127.* | localhost | \[::1\]) ;;
      *) kc_warn "sending the bearer token over plain HTTP to $KC_ADDR; use https:// outside the local machine" ;;
    esac
  fi
}

# kc_http METHOD PATH OUTFILE [BODYFILE]: one request. Returns 0 on 2xx with the body in OUTFILE;
# otherwise returns 1 with a readable reason in KC_ERR (and KC_HTTP_STATUS, KC_HTTP_CODE set).
# The token goes to curl through its standard input, never on its command line.
kc_http() {
  local method=$1 path=$2 out=$3 body=${4-} status cfg="" rc
  local args=(-sS -X "$method" -o "$out" -w '%{http_code}' --connect-timeout 10 --max-time 60
    -H 'Accept: application/json' --config -)
  kc_tmpdir
  KC_HTTP_STATUS="" KC_HTTP_CODE=""
  [[ -n $KC_CACERT ]] && args+=(--cacert "$KC_CACERT")
  [[ -n $body ]] && args+=(-H 'Content-Type: application/json' --data-binary "@$body")
  [[ -n $KC_TOKEN ]] && cfg="header = \"Authorization: Bearer $KC_TOKEN\""
  rc=0
  : >"$out"
  status=$(curl "${args[@]}" -- "$KC_ADDR$path" <<<"$cfg" 2>"$KC_TMP/curl.err") || rc=$?
  if ((rc != 0)); then
    local err
    err=$(head -c 300 "$KC_TMP/curl.err" | tr -d '\r')
    KC_ERR="cannot reach kekd at $KC_ADDR ($method $path): ${err#curl: }"
    return 1
  fi
  KC_HTTP_STATUS=$status
  if [[ $status == 2?? ]]; then return 0; fi
  local msg
  if msg=$(jq -r 'if (type == "object") and ((.error | type) == "object") then
                    "\(.error.code // "unknown_error"): \(.error.message // "(no message)")"
                    + (if .error.request_id then " [request id \(.error.request_id)]" else "" end)
                  else error("not an error body") end' "$out" 2>/dev/null); then
    KC_HTTP_CODE=$(jq -r '.error.code // ""' "$out" 2>/dev/null || true)
    KC_ERR="kekd answered HTTP $status $msg"
  else
    msg=$(head -c 200 "$out" | tr -c '[:print:]' ' ')
    KC_ERR="kekd answered HTTP $status${msg:+: $msg}"
  fi
  case $status in
    401) KC_ERR+=" (is KEKD_TOKEN set to a valid <client-id>.<secret>?)" ;;
    403) KC_ERR+=" (this needs the admin credential)" ;;
  esac
  return 1
}

kc_http_or_die() { kc_http "$@" || kc_die "$KC_ERR"; }

# kc_check_id ID: a ceremony id is 32 lowercase hex digits.
kc_check_id() {
  [[ $1 =~ $KC_RE_ID ]] || kc_usage_error "'$1' is not a ceremony id (32 lowercase hex digits)"
}

# kc_ceremony_summary FILE: one line "state S, approvals n of m (names), k more needed".
kc_ceremony_summary() {
  jq -r '"state \(.state), approvals \(.approvals | length) of \(.threshold)"
         + (if (.approvals | length) > 0 then " (" + ([.approvals[].operator] | join(", ")) + ")" else "" end)
         + (if .state == "open" then
              ", \(.approvals_needed // ((.threshold - (.approvals | length)) | if . < 0 then 0 else . end)) more needed"
            else "" end)' "$1"
}

# ---------------------------------------------------------------------------------------------
# Presentation

# kc_time_left RFC3339: "in 23h 59m" or "3h 2m ago" (empty if date cannot parse it).
kc_time_left() {
  local t now d sign=""
  t=$(date -u -d "$1" +%s 2>/dev/null) || return 0
  now=$(date -u +%s)
  d=$((t - now))
  if ((d < 0)); then d=$((-d)); sign=ago; fi
  local s
  if ((d >= 86400)); then s="$((d / 86400))d $((d % 86400 / 3600))h"
  elif ((d >= 3600)); then s="$((d / 3600))h $((d % 3600 / 60))m"
  else s="$((d / 60))m $((d % 60))s"; fi
  if [[ $sign == ago ]]; then printf '%s ago' "$s"; else printf 'in %s' "$s"; fi
}

# kc_is_past RFC3339: true if the time has passed.
kc_is_past() {
  local t
  t=$(date -u -d "$1" +%s 2>/dev/null) || return 1
  (($(date -u +%s) >= t))
}

# kc_explain_action: one paragraph on what the parsed statement (KS) makes kekd do.
kc_explain_action() {
  local k=${KS[key]-} v=${KS[version]-}
  case ${KS[action]} in
    create-key) printf 'Create a new key encryption key "%s" (version 1) inside the HSM. Clients granted access can then wrap and unwrap data keys with it.' "$k" ;;
    rotate-key) printf 'Add a new version to key "%s", generated inside the HSM. New wraps use the new version; data wrapped under older versions keeps unwrapping with them.' "$k" ;;
    disable-version) printf 'Disable version %s of key "%s": no wrap and no unwrap with it until a later ceremony enables it again. Data wrapped under it is unreadable meanwhile.' "$v" "$k" ;;
    enable-version) printf 'Enable version %s of key "%s" again for wrap and unwrap.' "$v" "$k" ;;
    schedule-destroy-version) printf 'Schedule version %s of key "%s" for destruction after %s. Until then it is unusable and the destruction can be cancelled by another ceremony; afterwards the HSM object is deleted and every DEK wrapped under it is lost for good.' "$v" "$k" "${KS[destroy-after]}" ;;
    cancel-destroy-version) printf 'Cancel the scheduled destruction of version %s of key "%s".' "$v" "$k" ;;
    set-operators) printf 'Replace the operator set: from then on ceremonies need %s of the %s operators listed below (and no one else).' "${KS[new-threshold]}" "${#KS_OP_NAMES[@]}" ;;
  esac
}
