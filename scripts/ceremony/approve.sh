#!/usr/bin/env bash
# Submits an operator's signature over a ceremony statement. See --help.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

usage() {
  cat <<EOT
Usage: approve.sh ID OPERATOR SIGFILE

Submits OPERATOR's signature over the statement of ceremony ID
(POST /v1/ceremonies/ID/approvals with {"operator": ..., "signature": ...}). The signature is
the credential: no bearer token is needed (KEKD_TOKEN is sent anyway if it is set).

  ID        the ceremony id
  OPERATOR  the operator's registered name, e.g. alice
  SIGFILE   the signature: the base64 file sign.sh writes, or a raw binary signature
            (DER ECDSA, or 64-byte Ed25519) as pkcs11-tool -o writes it
  -h, --help

Prints the ceremony state and the approvals so far / needed. Exits 1 with kekd's error code and
message if the approval is rejected (signature_rejected, unknown_operator, duplicate_approval,
failed_precondition: not open or expired, not_found).

$KC_NET_USAGE
EOT
}

pos=()
kc_split_eq "$@"
set -- "${KC_ARGS[@]+"${KC_ARGS[@]}"}"
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    -*) if kc_net_option "$@"; then shift 2; else kc_usage_error "unknown option $1"; fi ;;
    *) pos+=("$1"); shift ;;
  esac
done
[[ ${#pos[@]} -eq 3 ]] || kc_usage_error "need ID OPERATOR SIGFILE"
id=${pos[0]} op=${pos[1]} sigfile=${pos[2]}
kc_check_id "$id"
[[ $op =~ $KC_RE_OPNAME ]] || kc_usage_error "operator name '$op' must match [a-z0-9][a-z0-9_.-]{0,63}"
kc_need curl jq base64
kc_net_check
kc_tmpdir

kc_sig_file_to_b64 "$sigfile" || kc_die "$KC_ERR"
jq -n --arg operator "$op" --arg signature "$KC_B64" '{operator: $operator, signature: $signature}' >"$KC_TMP/body.json"
if ! kc_http POST "/v1/ceremonies/$id/approvals" "$KC_TMP/resp.json" "$KC_TMP/body.json"; then
  case ${KC_HTTP_CODE:-} in
    signature_rejected) hint=" -- was it signed over statement-$id.txt with $op's registered key?" ;;
    *) hint="" ;;
  esac
  kc_die "approval by $op rejected: $KC_ERR$hint"
fi
state=$(jq -r '.state // "?"' "$KC_TMP/resp.json")
printf 'ceremony %s: approval by %s accepted\n' "$id" "$op"
printf '  %s\n' "$(kc_ceremony_summary "$KC_TMP/resp.json")"
case $state in
  executed) printf '  executed: %s\n' "$(jq -r '.result // "-" | if type == "string" then . else tojson end' "$KC_TMP/resp.json")" ;;
  failed) printf '  FAILED: %s\n' "$(jq -r '.result // "-" | if type == "string" then . else tojson end' "$KC_TMP/resp.json")"; exit 1 ;;
esac
