#!/usr/bin/env bash
# Saves a ceremony transcript exactly as kekd serves it. See --help.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

usage() {
  cat <<EOT
Usage: transcript.sh ID [--out FILE]

Fetches the transcript of ceremony ID (GET /v1/ceremonies/ID/transcript) and saves it byte for
byte to FILE (default transcript-ID.json). Nothing is reformatted: verify it offline with
  verify-transcript.sh FILE --kekd-key kekd-audit.pub.pem [--operator NAME=PEMFILE ...]

  --out FILE  where to save it ("-" for standard output)
  -h, --help

$KC_NET_USAGE
EOT
}

id="" out=""
kc_split_eq "$@"
set -- "${KC_ARGS[@]+"${KC_ARGS[@]}"}"
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --out) kc_needval "$@"; out=$2; shift 2 ;;
    -*) if kc_net_option "$@"; then shift 2; else kc_usage_error "unknown option $1"; fi ;;
    *) [[ -z $id ]] || kc_usage_error "unexpected argument '$1'"; id=$1; shift ;;
  esac
done
[[ -n $id ]] || kc_usage_error "missing ceremony ID"
kc_check_id "$id"
kc_need curl jq sha256sum
kc_net_check
kc_tmpdir

kc_http_or_die GET "/v1/ceremonies/$id/transcript" "$KC_TMP/t.json"
out=${out:-transcript-$id.json}
if [[ $out == - ]]; then
  cat "$KC_TMP/t.json"
else
  [[ ! -d $out ]] || kc_die "$out is a directory"
  cp -- "$KC_TMP/t.json" "$out.tmp.$$" && chmod 0644 "$out.tmp.$$" && mv -f -- "$out.tmp.$$" "$out"
fi
bytes=$(wc -c <"$KC_TMP/t.json")
sum=$(sha256sum <"$KC_TMP/t.json")
state=$(jq -r '.document // "" | split("\n")[] | select(startswith("state: ")) | .[7:]' "$KC_TMP/t.json" 2>/dev/null | head -n1 || true)
kc_note "transcript of ceremony $id${state:+ (state $state)}: $bytes bytes, sha256:${sum%% *}"
[[ $out == - ]] || printf 'saved to %s\n' "$out"
[[ $state != open ]] || kc_warn "the ceremony is still open; fetch the transcript again once it is finished"
