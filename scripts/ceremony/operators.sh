#!/usr/bin/env bash
# Shows kekd's current operator set and checks its hash locally. See --help.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

usage() {
  cat <<EOT
Usage: operators.sh [--out FILE]

Fetches the current operator set (GET /v1/operators), rebuilds the canonical operator set from
the listed public keys, and checks that its SHA-256 is the set_hash kekd reports and that every
fingerprint is right. Prints the operators, the threshold and the set hash: the value every
statement's "operator-set:" line must show. Compare each fingerprint with the one the operator
read out at key generation.

  --out FILE  also save the canonical operator set text (what the hash is taken over)
  -h, --help

$KC_NET_USAGE
EOT
}

out=""
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
kc_need curl jq openssl sha256sum base64
kc_net_check
kc_tmpdir

kc_http_or_die GET /v1/operators "$KC_TMP/ops.json"
jq -e '(.threshold | type) == "number" and (.operators | type) == "array"' "$KC_TMP/ops.json" >/dev/null 2>&1 ||
  kc_die "unexpected answer from GET /v1/operators: $(head -c 200 "$KC_TMP/ops.json")"
threshold=$(jq -r .threshold "$KC_TMP/ops.json")
set_hash=$(jq -r '.set_hash // ""' "$KC_TMP/ops.json")
count=$(jq '.operators | length' "$KC_TMP/ops.json")

names=() algs=() keys=() fps=()
while IFS= read -r name; do
  j=${#names[@]}
  [[ $name =~ $KC_RE_OPNAME ]] || kc_die "kekd lists an operator with an invalid name '$name'"
  jq -j --argjson i "$j" '.operators | sort_by(.name) | .[$i].public_key' "$KC_TMP/ops.json" >"$KC_TMP/$j.pem"
  kc_pub_der "$KC_TMP/$j.pem" "$KC_TMP/$j.der" || kc_die "operator $name: $KC_ERR"
  kc_pub_algorithm "$KC_TMP/$j.pem" || kc_die "operator $name: $KC_ERR"
  listed=$(jq -r --argjson i "$j" '.operators | sort_by(.name) | .[$i] | "\(.algorithm) \(.fingerprint)"' "$KC_TMP/ops.json")
  fp=$(kc_fingerprint "$KC_TMP/$j.der")
  [[ $listed == "$KC_ALG $fp" ]] || kc_die "operator $name: kekd says '$listed' but the key is $KC_ALG $fp"
  names+=("$name") algs+=("$KC_ALG") keys+=("$(kc_b64_encode "$KC_TMP/$j.der")") fps+=("$fp")
done < <(jq -r '.operators | sort_by(.name) | .[].name' "$KC_TMP/ops.json")
((${#names[@]} == count)) || kc_die "could not read every operator"

set_text=$(kc_canonical_set "$threshold" names algs keys; echo x)
set_text=${set_text%x}
computed="sha256:$(kc_sha256_text "$set_text")"

printf 'operator set: %s of %s\n' "$threshold" "$count"
for j in "${!names[@]}"; do printf '  %-16s %-11s %s\n' "${names[j]}" "${algs[j]}" "${fps[j]}"; done
printf 'set hash:     %s\n' "$computed"
if [[ -n $out ]]; then printf '%s' "$set_text" >"$out"; chmod 0644 "$out"; kc_note "canonical operator set saved to $out"; fi
[[ $set_hash == "$computed" ]] || kc_die "kekd reports set_hash $set_hash, but the listed operators hash to $computed"
printf 'set hash matches what kekd reports\n'
