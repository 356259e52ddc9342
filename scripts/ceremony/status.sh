#!/usr/bin/env bash
# Shows the progress of a ceremony, optionally until it is finished. See --help.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

usage() {
  cat <<EOT
Usage: status.sh ID [--watch]

Shows ceremony ID (GET /v1/ceremonies/ID): action, state, approvals so far (who, when), how many
are still needed, expiry and result.

  --watch     poll every 2 s, printing each change, until the state is no longer open; then
              exit 0 if the ceremony was executed, 3 if it ended otherwise (cancelled, expired,
              failed)
  -h, --help

$KC_NET_USAGE
EOT
}

id="" watch=0
kc_split_eq "$@"
set -- "${KC_ARGS[@]+"${KC_ARGS[@]}"}"
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --watch) watch=1; shift ;;
    -*) if kc_net_option "$@"; then shift 2; else kc_usage_error "unknown option $1"; fi ;;
    *) [[ -z $id ]] || kc_usage_error "unexpected argument '$1'"; id=$1; shift ;;
  esac
done
[[ -n $id ]] || kc_usage_error "missing ceremony ID"
kc_check_id "$id"
kc_need curl jq
kc_net_check
kc_tmpdir

show() {
  local f=$1 exp
  exp=$(jq -r '.expires_at // ""' "$f")
  jq -r '"ceremony   \(.id)",
         "action     \(.action)" + (if .key then " \(.key)" else "" end) + (if .version then " version \(.version)" else "" end),
         "state      \(.state)",
         "approvals  \(.approvals | length) of \(.threshold)"
           + (if .state == "open" then " (\(.approvals_needed // ((.threshold - (.approvals | length)) | if . < 0 then 0 else . end)) more needed)" else "" end),
         (.approvals[] | "           \(.operator) at \(.at)"),
         "operators  \(.operator_set // "-")",
         "proposed   \(.created_at // "-") by \(.proposed_by // "-")"' "$f"
  printf 'expires    %s%s\n' "${exp:--}" "${exp:+ ($(kc_time_left "$exp"))}"
  jq -r 'if .finished_at then "finished   \(.finished_at)" else empty end,
         if .result then "result     \(.result | if type == "string" then . else tojson end)" else empty end' "$f"
}

if ((!watch)); then
  kc_http_or_die GET "/v1/ceremonies/$id" "$KC_TMP/c.json"
  show "$KC_TMP/c.json"
  exit 0
fi

last="" failures=0 polls=0
while :; do
  if kc_http GET "/v1/ceremonies/$id" "$KC_TMP/c.json"; then
    failures=0 polls=$((polls + 1))
    cur=$(jq -c '[.state, [.approvals[].operator]]' "$KC_TMP/c.json")
    if [[ $cur != "$last" ]]; then
      if ((polls == 1)); then show "$KC_TMP/c.json"; else
        printf '%s  %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(kc_ceremony_summary "$KC_TMP/c.json")"
      fi
      last=$cur
    fi
    state=$(jq -r .state "$KC_TMP/c.json")
    if [[ $state != open ]]; then
      if ((polls > 1)); then
        jq -r 'if .result then "result     \(.result | if type == "string" then . else tojson end)" else empty end' "$KC_TMP/c.json"
      fi
      printf 'ceremony %s is %s\n' "$id" "$state"
      [[ $state == executed ]] && exit 0
      exit 3
    fi
  else
    # 4xx other than rate limiting will not get better by waiting
    if [[ ${KC_HTTP_STATUS:-} == 4?? && ${KC_HTTP_STATUS:-} != 429 ]]; then kc_die "$KC_ERR"; fi
    failures=$((failures + 1))
    kc_warn "$KC_ERR (retrying)"
    ((failures < 30)) || kc_die "giving up after 30 failed polls"
  fi
  sleep 2
done
