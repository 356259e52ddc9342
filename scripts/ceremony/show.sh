#!/usr/bin/env bash
# Fetches a ceremony statement, checks it and shows an operator what they are asked to sign.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

usage() {
  cat <<EOT
Usage: show.sh ID [--out FILE] [--expect-set sha256:HEX]
       show.sh ID --from FILE [--expect-set sha256:HEX]

Fetches the statement of ceremony ID (GET /v1/ceremonies/ID/statement), saves its bytes exactly
to FILE (default statement-ID.txt), checks locally that it is a well-formed kekd ceremony v1
statement for ceremony ID, and explains field by field what signing it approves.

  ID                   the ceremony id (32 hex digits) the administrator gave you
  --out FILE           where to save the statement (default statement-ID.txt)
  --from FILE          review a statement file you were handed instead of fetching it (offline)
  --expect-set HASH    also require that the statement names this operator-set hash (the one
                       you recorded at kekd init or at the last set-operators ceremony)
  -h, --help           this text

Exit status: 0 if the statement is well-formed for ID, 1 otherwise (the bytes are still saved so
that you can show them to the administrator or the witness).

$KC_NET_USAGE
EOT
}

id="" out="" from="" expect=""
kc_split_eq "$@"
set -- "${KC_ARGS[@]+"${KC_ARGS[@]}"}"
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --out) kc_needval "$@"; out=$2; shift 2 ;;
    --from) kc_needval "$@"; from=$2; shift 2 ;;
    --expect-set) kc_needval "$@"; expect=$2; shift 2 ;;
    -*) if kc_net_option "$@"; then shift 2; else kc_usage_error "unknown option $1"; fi ;;
    *) [[ -z $id ]] || kc_usage_error "unexpected argument '$1'"; id=$1; shift ;;
  esac
done
[[ -n $id ]] || kc_usage_error "missing ceremony ID"
kc_check_id "$id"
[[ -z $expect || $expect =~ $KC_RE_HASH ]] || kc_usage_error "--expect-set needs sha256:<64 hex digits>"
[[ -z $from || -z $out ]] || kc_usage_error "--out and --from exclude each other"
kc_need sha256sum base64 openssl
kc_tmpdir

if [[ -n $from ]]; then
  file=$from
else
  kc_need curl jq
  kc_net_check
  kc_http_or_die GET "/v1/ceremonies/$id/statement" "$KC_TMP/statement"
  file=${out:-statement-$id.txt}
  [[ ! -d $file ]] || kc_die "$file is a directory"
  cp -- "$KC_TMP/statement" "$file.tmp.$$" && chmod 0644 "$file.tmp.$$" && mv -f -- "$file.tmp.$$" "$file"
fi

kc_read_exact "$file" text || kc_die "$KC_ERR"
bytes=$(wc -c <"$file")
sum=$(kc_sha256_text "$text")
problem=""
if ! kc_parse_statement "$text"; then
  problem=$KC_ERR
elif [[ ${KS[id]} != "$id" ]]; then
  problem="the statement is for ceremony ${KS[id]}, not $id"
elif [[ -n $expect && ${KS[operator-set]} != "$expect" ]]; then
  problem="the statement names operator set ${KS[operator-set]}, you expected $expect"
fi

rule='--------------------------------------------------------------------------------'
if [[ -n $problem ]]; then
  {
    echo "$rule"
    echo " DO NOT SIGN: statement for ceremony $id is not acceptable"
    echo " reason: $problem"
    echo " file:   $file ($bytes bytes, sha256:$sum)"
    echo "$rule"
    cat -v -- "$file" | head -n 60
    echo "$rule"
  } >&2
  exit 1
fi

row() { printf ' %-14s %s\n' "$1" "$2"; }
wrap() { fold -s -w 62 <<<"$1" | sed -e 's/ *$//' -e 's/^/                /'; }

echo "$rule"
echo " kekd ceremony statement -- read every line before you sign"
echo "$rule"
row "ceremony" "${KS[id]}"
row "action" "${KS[action]}"
wrap "$(kc_explain_action)"
[[ -n ${KS[key]-} ]] && row "key" "${KS[key]}"
[[ -n ${KS[version]-} ]] && row "version" "${KS[version]}"
if [[ -n ${KS[destroy-after]-} ]]; then
  row "destroy-after" "${KS[destroy-after]} ($(kc_time_left "${KS[destroy-after]}"))"
fi
if [[ ${KS[action]} == set-operators ]]; then
  echo " proposed operators (compare each fingerprint with the operator's own, out of band):"
  for j in "${!KS_OP_NAMES[@]}"; do
    printf '%s' "${KS_OP_KEYS[j]}" | base64 -d >"$KC_TMP/op.der"
    printf '   %-16s %-11s %s\n' "${KS_OP_NAMES[j]}" "${KS_OP_ALGS[j]}" "$(kc_fingerprint "$KC_TMP/op.der")"
  done
  newset=$(kc_canonical_set "${KS[new-threshold]}" KS_OP_NAMES KS_OP_ALGS KS_OP_KEYS; echo x)
  newset=${newset%x}
  row "new-threshold" "${KS[new-threshold]} of ${#KS_OP_NAMES[@]}"
  row "new set hash" "sha256:$(kc_sha256_text "$newset")"
  wrap "The operator-set hash after execution: later statements must name it."
fi
row "operator-set" "${KS[operator-set]}"
wrap "The hash of the CURRENT operator set, the one that must approve. Compare it with the hash you recorded (kekd init, operators.sh, the last set-operators ceremony): a different hash means a different group of people is being asked."
row "threshold" "${KS[threshold]}"
wrap "Signatures needed from that set: kekd executes the action as soon as ${KS[threshold]} valid approvals have arrived."
row "proposed-by" "${KS[proposed-by]}"
row "proposed-at" "${KS[proposed-at]}"
row "expires-at" "${KS[expires-at]} ($(kc_time_left "${KS[expires-at]}"))"
wrap "kekd refuses approvals after this time."
echo "$rule"
echo " the exact bytes you sign ($bytes bytes, sha256:$sum):"
echo "$rule"
cat -- "$file"
echo "$rule"
echo " well-formed kekd ceremony v1 statement for ceremony $id"
[[ -n $expect ]] && echo " operator-set matches the expected $expect"
[[ -z $from ]] && echo " saved to $file"
echo " If this is what you agreed to, sign it offline with your own key:"
echo "   $(dirname -- "$0")/sign.sh $file YOUR.key"
echo "$rule"
if kc_is_past "${KS[expires-at]}"; then
  kc_warn "this ceremony expired at ${KS[expires-at]}; kekd will refuse approvals"
fi
