#!/usr/bin/env bash
# Cancels an open ceremony (administrator). See --help.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

usage() {
  cat <<EOT
Usage: cancel.sh ID

Cancels open ceremony ID (POST /v1/ceremonies/ID/cancel, admin credential). Approvals already
given become void; kekd refuses further ones. The cancellation is audited and shows in the
transcript (state: cancelled).

$KC_NET_USAGE
EOT
}

id=""
kc_split_eq "$@"
set -- "${KC_ARGS[@]+"${KC_ARGS[@]}"}"
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    -*) if kc_net_option "$@"; then shift 2; else kc_usage_error "unknown option $1"; fi ;;
    *) [[ -z $id ]] || kc_usage_error "unexpected argument '$1'"; id=$1; shift ;;
  esac
done
[[ -n $id ]] || kc_usage_error "missing ceremony ID"
kc_check_id "$id"
kc_need curl jq
kc_net_check
kc_tmpdir

printf '{}' >"$KC_TMP/body.json"
kc_http_or_die POST "/v1/ceremonies/$id/cancel" "$KC_TMP/resp.json" "$KC_TMP/body.json"
printf 'ceremony %s: %s\n' "$id" "$(kc_ceremony_summary "$KC_TMP/resp.json")"
