#!/usr/bin/env bash
# Proposes a kekd ceremony (administrator). See --help.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

usage() {
  cat <<EOT
Usage: propose.sh ACTION [KEY] [--version N] [--destroy-after RFC3339]
                  [--operators FILE.toml | --operator NAME=PEMFILE ...] [--threshold M] [--force]
                  [--dry-run]

Proposes a ceremony (POST /v1/ceremonies, admin credential). Prints the new ceremony id on
stdout and the statement the operators will sign on stderr, for your review.

Actions:
  create-key KEY                                    a new KEK, version 1
  rotate-key KEY                                    a new version of KEY
  disable-version KEY --version N
  enable-version KEY --version N
  schedule-destroy-version KEY --version N [--destroy-after 2026-12-23T10:00:00Z]
                                                    (default and minimum set by kekd: 30 / 7 days)
  cancel-destroy-version KEY --version N
  set-operators (--operators FILE.toml | --operator NAME=PEMFILE ...) --threshold M [--force]
                                                    replace the operator set and its threshold

  --operators FILE.toml    the new set in the kekd init operators-file format: one [[operator]]
                           table per operator with name = "..." and public_key = "path/to.pem"
                           (relative to FILE.toml) or the PEM itself
  --operator NAME=PEMFILE  one member of the new set (repeatable; instead of --operators)
  --threshold M            approvals the new set will need (1 <= M <= N)
  --force                  allow threshold 1 with more than one operator (any single operator
                           could then act alone)
  --dry-run                print the JSON request body on stdout and stop (no network)
  -h, --help               this text

$KC_NET_USAGE

Example:
  id=\$(scripts/ceremony/propose.sh rotate-key payments)
EOT
}

action="" key="" version="" destroy_after="" opsfile="" threshold="" force=0 dry_run=0
op_specs=()
kc_split_eq "$@"
set -- "${KC_ARGS[@]+"${KC_ARGS[@]}"}"
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --version) kc_needval "$@"; version=$2; shift 2 ;;
    --destroy-after) kc_needval "$@"; destroy_after=$2; shift 2 ;;
    --operators) kc_needval "$@"; opsfile=$2; shift 2 ;;
    --operator) kc_needval "$@"; op_specs+=("$2"); shift 2 ;;
    --threshold) kc_needval "$@"; threshold=$2; shift 2 ;;
    --force) force=1; shift ;;
    --dry-run) dry_run=1; shift ;;
    -*) if kc_net_option "$@"; then shift 2; else kc_usage_error "unknown option $1"; fi ;;
    *)
      if [[ -z $action ]]; then action=$1
      elif [[ -z $key ]]; then key=$1
      else kc_usage_error "unexpected argument '$1'"; fi
      shift
      ;;
  esac
done

[[ -n $action ]] || kc_usage_error "missing ACTION"
kc_is_action "$action" || kc_usage_error "unknown action '$action' (one of: $KC_ACTIONS)"
if [[ $action == set-operators ]]; then
  [[ -z $key ]] || kc_usage_error "set-operators takes no KEY"
  [[ -z $version && -z $destroy_after ]] || kc_usage_error "set-operators takes no --version or --destroy-after"
  [[ -n $opsfile || ${#op_specs[@]} -gt 0 ]] || kc_usage_error "set-operators needs --operators FILE.toml or --operator NAME=PEMFILE ..."
  [[ -z $opsfile || ${#op_specs[@]} -eq 0 ]] || kc_usage_error "use either --operators or --operator, not both"
  [[ -n $threshold ]] || kc_usage_error "set-operators needs --threshold M"
  [[ $threshold =~ $KC_RE_UINT ]] || kc_usage_error "--threshold must be a positive integer"
else
  [[ -n $key ]] || kc_usage_error "$action needs a KEY"
  [[ $key =~ $KC_RE_KEY ]] || kc_usage_error "key name '$key' must match [a-z0-9][a-z0-9_-]{0,63}"
  [[ -z $opsfile && ${#op_specs[@]} -eq 0 && -z $threshold && $force -eq 0 ]] ||
    kc_usage_error "--operators, --operator, --threshold and --force belong to set-operators"
  if kc_action_has_version "$action"; then
    [[ -n $version ]] || kc_usage_error "$action needs --version N"
    [[ $version =~ $KC_RE_UINT ]] || kc_usage_error "--version must be a positive integer"
  else
    [[ -z $version ]] || kc_usage_error "$action takes no --version"
  fi
  if [[ -n $destroy_after ]]; then
    [[ $action == schedule-destroy-version ]] || kc_usage_error "--destroy-after belongs to schedule-destroy-version"
    [[ $destroy_after =~ $KC_RE_TIME ]] ||
      kc_usage_error "--destroy-after must be RFC 3339 UTC with seconds, e.g. 2026-12-23T10:00:00Z"
  fi
fi
kc_need curl jq openssl sha256sum base64
((dry_run)) || kc_net_check
kc_tmpdir

# ---------------------------------------------------------------------------------------------
# The operators file (TOML subset): [[operator]] tables with string values name and public_key.
# Basic ("..."), literal ('...') and multi-line ("""...""", '''...''') strings, # comments.

TOML_NAMES=() TOML_KEYS=()

toml_err() { kc_die "$opsfile line $1: $2"; }

# toml_unescape STRING LINENO: TOML basic-string escapes; result in TOML_S.
toml_unescape() {
  local s=$1 out="" c i=0 n=${#1} hex
  while ((i < n)); do
    c=${s:i:1}
    if [[ $c != "\\" ]]; then out+=$c; i=$((i + 1)); continue; fi
    c=${s:i+1:1}
    case $c in
      n) out+=$'\n' ;; t) out+=$'\t' ;; r) out+=$'\r' ;; b) out+=$'\b' ;; f) out+=$'\f' ;;
      '"') out+='"' ;; "\\") out+="\\" ;;
      u)
        hex=${s:i+2:4}
        [[ $hex =~ ^00[0-7][0-9A-Fa-f]$ ]] || toml_err "$2" "only ASCII \\u escapes are supported"
        printf -v c "\\x%s" "${hex:2:2}"; printf -v c "$c"; out+=$c; i=$((i + 4))
        ;;
      $'\n' | ' ' | $'\t')
        # line-ending backslash: skip whitespace and newlines
        local j=$((i + 1))
        while ((j < n)) && [[ ${s:j:1} == [[:space:]] ]]; do j=$((j + 1)); done
        i=$j; continue
        ;;
      *) toml_err "$2" "unsupported escape \\$c in a string" ;;
    esac
    i=$((i + 2))
  done
  TOML_S=$out
}

# toml_basic_string REST LINENO: parses "..." at the start of REST; sets TOML_S and TOML_REST.
toml_basic_string() {
  local s=$1 i=1 n=${#1} c
  while ((i < n)); do
    c=${s:i:1}
    if [[ $c == "\\" ]]; then i=$((i + 2)); continue; fi
    if [[ $c == '"' ]]; then
      toml_unescape "${s:1:i-1}" "$2"
      TOML_REST=${s:i+1}
      return 0
    fi
    i=$((i + 1))
  done
  toml_err "$2" "unterminated string"
}

toml_assign() {
  local k=$1 v=$2 ln=$3 cur=$((${#TOML_NAMES[@]} - 1))
  ((cur >= 0)) || toml_err "$ln" "'$k' outside an [[operator]] table"
  case $k in
    name) [[ -z ${TOML_NAMES[cur]} ]] || toml_err "$ln" "name given twice"; TOML_NAMES[cur]=$v ;;
    public_key) [[ -z ${TOML_KEYS[cur]} ]] || toml_err "$ln" "public_key given twice"; TOML_KEYS[cur]=$v ;;
    *) toml_err "$ln" "unknown key '$k' (an operator has name and public_key)" ;;
  esac
}

toml_check_tail() {
  local t=$1
  t=${t#"${t%%[![:space:]]*}"}
  [[ -z $t || $t == \#* ]] || toml_err "$2" "unexpected text after the value: '${t:0:40}'"
}

parse_operators_toml() {
  local f=$1 line t ln=0 k rest ml="" ml_key="" ml_val="" ml_line=0 delim
  [[ -r $f ]] || kc_die "cannot read operators file $f"
  while IFS= read -r line || [[ -n $line ]]; do
    ln=$((ln + 1))
    line=${line%$'\r'}
    if [[ -n $ml ]]; then
      if [[ $line == *"$ml"* ]]; then
        ml_val+=${line%%"$ml"*}
        toml_check_tail "${line#*"$ml"}" "$ln"
        if [[ $ml == '"""' ]]; then toml_unescape "$ml_val" "$ml_line"; ml_val=$TOML_S; fi
        toml_assign "$ml_key" "$ml_val" "$ml_line"
        ml=""
      else
        ml_val+="$line"$'\n'
      fi
      continue
    fi
    t=${line#"${line%%[![:space:]]*}"}
    [[ -z $t || $t == \#* ]] && continue
    if [[ $t =~ ^\[\[[[:space:]]*operator[[:space:]]*\]\][[:space:]]*(#.*)?$ ]]; then
      TOML_NAMES+=("") TOML_KEYS+=("")
      continue
    fi
    [[ $t != \[* ]] || toml_err "$ln" "only [[operator]] tables are allowed here"
    [[ $t =~ ^([A-Za-z0-9_-]+)[[:space:]]*=[[:space:]]*(.*)$ ]] || toml_err "$ln" "expected key = \"value\""
    k=${BASH_REMATCH[1]} rest=${BASH_REMATCH[2]}
    if [[ $rest == '"""'* || $rest == "'''"* ]]; then
      delim=${rest:0:3}
      rest=${rest:3}
      if [[ $rest == *"$delim"* ]]; then
        ml_val=${rest%%"$delim"*}
        toml_check_tail "${rest#*"$delim"}" "$ln"
        if [[ $delim == '"""' ]]; then toml_unescape "$ml_val" "$ln"; ml_val=$TOML_S; fi
        toml_assign "$k" "$ml_val" "$ln"
      else
        ml=$delim ml_key=$k ml_line=$ln
        # a newline right after the opening delimiter is not part of the string
        if [[ -n $rest ]]; then ml_val="$rest"$'\n'; else ml_val=""; fi
      fi
    elif [[ $rest == '"'* ]]; then
      toml_basic_string "$rest" "$ln"
      toml_check_tail "$TOML_REST" "$ln"
      toml_assign "$k" "$TOML_S" "$ln"
    elif [[ $rest == "'"* ]]; then
      rest=${rest:1}
      [[ $rest == *"'"* ]] || toml_err "$ln" "unterminated string"
      toml_check_tail "${rest#*"'"}" "$ln"
      toml_assign "$k" "${rest%%"'"*}" "$ln"
    else
      toml_err "$ln" "the value of '$k' must be a string"
    fi
  done <"$f"
  [[ -z $ml ]] || toml_err "$ml_line" "unterminated multi-line string"
  ((${#TOML_NAMES[@]} > 0)) || kc_die "$f has no [[operator]] table"
  local j
  for j in "${!TOML_NAMES[@]}"; do
    [[ -n ${TOML_NAMES[j]} ]] || kc_die "$f: operator #$((j + 1)) has no name"
    [[ -n ${TOML_KEYS[j]} ]] || kc_die "$f: operator ${TOML_NAMES[j]} has no public_key"
  done
}

# ---------------------------------------------------------------------------------------------
# set-operators: resolve, check and list the proposed members.

OP_NAMES=() OP_ALGS=() OP_B64=() OP_PEMS=() OP_FPS=()
add_operator() { # NAME PEMFILE WHERE
  local name=$1 src=$2 where=$3 j=${#OP_NAMES[@]}
  [[ $name =~ $KC_RE_OPNAME ]] || kc_die "$where: operator name '$name' must match [a-z0-9][a-z0-9_.-]{0,63}"
  [[ -r $src ]] || kc_die "$where: cannot read public key file $src"
  openssl pkey -pubin -in "$src" -outform PEM -out "$KC_TMP/op$j.pem" 2>/dev/null ||
    kc_die "$where: $src is not a PEM public key (SubjectPublicKeyInfo)"
  kc_pub_algorithm "$KC_TMP/op$j.pem" || kc_die "$where: $KC_ERR"
  [[ $KC_ALG == ed25519 || $KC_ALG == ecdsa-p256 ]] ||
    kc_die "$where: the key of $name is neither Ed25519 nor ECDSA P-256"
  kc_pub_der "$KC_TMP/op$j.pem" "$KC_TMP/op$j.der" || kc_die "$where: $KC_ERR"
  OP_NAMES+=("$name") OP_ALGS+=("$KC_ALG") OP_B64+=("$(kc_b64_encode "$KC_TMP/op$j.der")")
  OP_PEMS+=("$(cat "$KC_TMP/op$j.pem")") OP_FPS+=("$(kc_fingerprint "$KC_TMP/op$j.der")")
}

if [[ $action == set-operators ]]; then
  if [[ -n $opsfile ]]; then
    parse_operators_toml "$opsfile"
    opsdir=$(dirname -- "$opsfile")
    for j in "${!TOML_NAMES[@]}"; do
      v=${TOML_KEYS[j]}
      if [[ $v == *"-----BEGIN"* ]]; then
        printf '%s\n' "$v" >"$KC_TMP/inline$j.pem"
        add_operator "${TOML_NAMES[j]}" "$KC_TMP/inline$j.pem" "$opsfile (operator ${TOML_NAMES[j]})"
      else
        [[ $v == /* ]] || v="$opsdir/$v"
        add_operator "${TOML_NAMES[j]}" "$v" "$opsfile (operator ${TOML_NAMES[j]})"
      fi
    done
  else
    for spec in "${op_specs[@]}"; do
      [[ $spec == ?*=?* ]] || kc_usage_error "--operator wants NAME=PEMFILE, got '$spec'"
      add_operator "${spec%%=*}" "${spec#*=}" "--operator $spec"
    done
  fi
  n=${#OP_NAMES[@]}
  declare -A seen_name=() seen_key=()
  for j in "${!OP_NAMES[@]}"; do
    [[ -z ${seen_name[${OP_NAMES[j]}]-} ]] || kc_die "operator ${OP_NAMES[j]} is listed twice"
    [[ -z ${seen_key[${OP_B64[j]}]-} ]] || kc_die "operators ${seen_key[${OP_B64[j]}]} and ${OP_NAMES[j]} have the same public key"
    seen_name[${OP_NAMES[j]}]=1 seen_key[${OP_B64[j]}]=${OP_NAMES[j]}
  done
  ((threshold <= n)) || kc_die "threshold $threshold is larger than the $n operators"
  if ((threshold == 1 && n > 1 && !force)); then
    kc_die "threshold 1 with $n operators lets any one of them act alone; add --force if that is really intended"
  fi
  kc_note "proposed operator set ($threshold of $n):"
  for j in "${!OP_NAMES[@]}"; do
    kc_note "$(printf '  %-16s %-11s %s' "${OP_NAMES[j]}" "${OP_ALGS[j]}" "${OP_FPS[j]}")"
  done
fi

# ---------------------------------------------------------------------------------------------
# The request

case $action in
  set-operators)
    # name TAB base64(PEM) per line: PEM text never goes through jq's command line
    for j in "${!OP_NAMES[@]}"; do
      printf '%s\t%s\n' "${OP_NAMES[j]}" "$(printf '%s\n' "${OP_PEMS[j]}" | base64 -w0)"
    done | jq -Rn --argjson threshold "$threshold" --argjson force "$( ((force)) && echo true || echo false)" \
      '{action: "set-operators",
        operators: [inputs | split("\t") | {name: .[0], public_key: (.[1] | @base64d)}],
        threshold: $threshold, force: $force}' >"$KC_TMP/body.json"
    ;;
  *)
    jq -n --arg action "$action" --arg key "$key" --arg version "$version" --arg da "$destroy_after" \
      '{action: $action, key: $key}
       + (if $version != "" then {version: ($version | tonumber)} else {} end)
       + (if $da != "" then {destroy_after: $da} else {} end)' >"$KC_TMP/body.json"
    ;;
esac

if ((dry_run)); then
  jq . "$KC_TMP/body.json"
  kc_note "dry run: nothing was sent to kekd"
  exit 0
fi
kc_http_or_die POST /v1/ceremonies "$KC_TMP/resp.json" "$KC_TMP/body.json"

id=$(jq -r '.id // empty' "$KC_TMP/resp.json" 2>/dev/null) || true
[[ $id =~ $KC_RE_ID ]] || kc_die "kekd's answer has no valid ceremony id: $(head -c 300 "$KC_TMP/resp.json")"
jq -j '.statement // empty' "$KC_TMP/resp.json" >"$KC_TMP/statement" 2>/dev/null || true

# Check what kekd wrote against what we asked for, before anyone is asked to sign it.
mismatch=""
kc_read_exact "$KC_TMP/statement" text || text=""
if ! kc_parse_statement "$text"; then
  mismatch="its statement is not well-formed: $KC_ERR"
elif [[ ${KS[id]} != "$id" ]]; then
  mismatch="its statement is for ceremony ${KS[id]}"
elif [[ ${KS[action]} != "$action" || ${KS[key]-} != "$key" || ${KS[version]-} != "$version" ]]; then
  mismatch="its statement says '${KS[action]} ${KS[key]-} ${KS[version]-}', not what was requested"
elif [[ -n $destroy_after && ${KS[destroy-after]} != "$destroy_after" ]]; then
  mismatch="its statement says destroy-after ${KS[destroy-after]}, not $destroy_after"
elif [[ $action == set-operators ]]; then
  want=$(for j in "${!OP_NAMES[@]}"; do printf '%s %s %s\n' "${OP_NAMES[j]}" "${OP_ALGS[j]}" "${OP_B64[j]}"; done | sort)
  got=$(for j in "${!KS_OP_NAMES[@]}"; do printf '%s %s %s\n' "${KS_OP_NAMES[j]}" "${KS_OP_ALGS[j]}" "${KS_OP_KEYS[j]}"; done)
  if [[ $want != "$got" || ${KS[new-threshold]} != "$threshold" ]]; then
    mismatch="its statement lists a different operator set or threshold than requested"
  fi
fi
if [[ -n $mismatch ]]; then
  kc_note "----- statement as served -----"
  cat -v "$KC_TMP/statement" >&2 || true
  kc_note "-------------------------------"
  kc_die "kekd created ceremony $id but $mismatch. Do not let anyone sign it; cancel it: $(dirname -- "$0")/cancel.sh $id"
fi

what="$action${KS[key]:+ ${KS[key]}}${KS[version]:+ version ${KS[version]}}"
{
  echo "proposed ceremony $id: $what"
  echo "  $(kc_ceremony_summary "$KC_TMP/resp.json"); expires ${KS[expires-at]} ($(kc_time_left "${KS[expires-at]}"))"
  echo "statement (the exact bytes the operators will sign; review it):"
  echo "-----"
  cat "$KC_TMP/statement"
  echo "-----"
  echo "next: each operator reviews it with  show.sh $id  and signs offline with  sign.sh statement-$id.txt KEY"
} >&2
printf '%s\n' "$id"
