#!/usr/bin/env bash
# Fetches kekd's audit public key, which signs transcripts. See --help.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

usage() {
  cat <<EOT
Usage: audit-key.sh [--out FILE]

Fetches kekd's audit public key (GET /v1/audit/public-key, any kekd credential): the ECDSA P-256
key inside the HSM that signs audit checkpoints and ceremony transcripts. Saves it to FILE
(default kekd-audit.pub.pem) and prints its fingerprint. Record the fingerprint once, at
kekd init, in the ceremony log; verify-transcript.sh --kekd-key FILE then checks transcripts
against it offline.

  --out FILE  where to save the PEM
  -h, --help

$KC_NET_USAGE
EOT
}

out="kekd-audit.pub.pem"
kc_split_eq "$@"
set -- "${KC_ARGS[@]+"${KC_ARGS[@]}"}"
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --out) kc_needval "$@"; out=$2; shift 2 ;;
    -*) if kc_net_option "$@"; then shift 2; else kc_usage_error "unknown option $1"; fi ;;
    *) kc_usage_error "unexpected argument '$1'" ;;
  esac
done
kc_need curl jq openssl sha256sum
kc_net_check
kc_tmpdir

kc_http_or_die GET /v1/audit/public-key "$KC_TMP/audit.pem"
kc_pub_algorithm "$KC_TMP/audit.pem" || kc_die "kekd's answer is not a PEM public key: $(head -c 200 "$KC_TMP/audit.pem")"
[[ $KC_ALG == ecdsa-p256 ]] || kc_die "kekd's audit key is $KC_ALG, expected ECDSA P-256"
kc_pub_der "$KC_TMP/audit.pem" "$KC_TMP/audit.der" || kc_die "$KC_ERR"
openssl pkey -pubin -in "$KC_TMP/audit.pem" -out "$out.tmp.$$" 2>/dev/null || kc_die "cannot write $out"
chmod 0644 "$out.tmp.$$" && mv -f -- "$out.tmp.$$" "$out"
printf 'audit public key: %s\n' "$out"
printf 'fingerprint: %s\n' "$(kc_fingerprint "$KC_TMP/audit.der")"
