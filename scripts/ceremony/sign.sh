#!/usr/bin/env bash
# Signs a ceremony statement offline with an operator's private key file. See --help.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

usage() {
  cat <<'EOF'
Usage: sign.sh STATEMENT_FILE KEY_FILE [--out SIGFILE] [--passin ARG]

Signs a kekd ceremony statement with your operator private key, offline (no network needed).
Run it on your own machine, on the statement file you reviewed with show.sh (or received from
the administrator and reviewed with show.sh ID --from FILE).

  STATEMENT_FILE  the exact statement bytes (as GET /v1/ceremonies/{id}/statement serves them)
  KEY_FILE        your private key (PEM, from keygen.sh); Ed25519 or ECDSA P-256 is detected
  --out SIGFILE   where to write the signature (default: STATEMENT_FILE without .txt, then
                  .<key file name>.sig, e.g. statement-<id>.alice.sig)
  --passin ARG    passphrase source for an encrypted key, openssl syntax (env:VAR, file:PATH);
                  by default openssl asks on the terminal
  -h, --help      this text

The statement is checked first (kekd ceremony v1 format); a file that is not a well-formed
statement is refused. Signatures:
  Ed25519     openssl pkeyutl -sign -rawin   (raw 64-byte signature)
  ECDSA P-256 openssl dgst -sha256 -sign     (DER)
The signature is verified against your public key and written as one line of base64. Hand the
.sig file to the administrator (approve.sh ID OPERATOR SIGFILE). It is not secret.
EOF
}

stmt="" key="" out="" passin=""
kc_split_eq "$@"
set -- "${KC_ARGS[@]+"${KC_ARGS[@]}"}"
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --out) kc_needval "$@"; out=$2; shift 2 ;;
    --passin) kc_needval "$@"; passin=$2; shift 2 ;;
    -*) kc_usage_error "unknown option $1" ;;
    *)
      if [[ -z $stmt ]]; then stmt=$1
      elif [[ -z $key ]]; then key=$1
      else kc_usage_error "unexpected argument '$1'"; fi
      shift
      ;;
  esac
done
[[ -n $stmt && -n $key ]] || kc_usage_error "need STATEMENT_FILE and KEY_FILE"
kc_need openssl sha256sum base64
kc_tmpdir

# 1. The statement must be one.
kc_read_exact "$stmt" text || kc_die "$KC_ERR"
kc_parse_statement "$text" || kc_die "$stmt is not a well-formed ceremony statement: $KC_ERR"

# 2. The key: a private key we can read, of a supported algorithm.
[[ -f $key && -r $key ]] || kc_die "cannot read key file $key"
kc_priv_algorithm "$key" "$passin" || kc_die "$KC_ERR"
alg=$KC_ALG
perm=$(stat -c '%a' -- "$key")
if ((8#$perm & 8#077)); then
  kc_warn "$key can be read by other users (mode $perm); run: chmod 600 $key"
fi
pass=()
[[ -n $passin ]] && pass=(-passin "$passin")
openssl pkey -in "$key" "${pass[@]+"${pass[@]}"}" -pubout -out "$KC_TMP/pub.pem" 2>/dev/null ||
  kc_die "cannot derive the public key from $key"
kc_pub_der "$KC_TMP/pub.pem" "$KC_TMP/pub.der" || kc_die "$KC_ERR"
fp=$(kc_fingerprint "$KC_TMP/pub.der")

# 3. Sign exactly the file's bytes.
case $alg in
  ed25519)
    openssl pkeyutl -sign -inkey "$key" "${pass[@]+"${pass[@]}"}" -rawin -in "$stmt" -out "$KC_TMP/sig" 2>"$KC_TMP/err" ||
      kc_die "openssl pkeyutl -sign failed: $(head -c 300 "$KC_TMP/err")"
    ;;
  ecdsa-p256)
    openssl dgst -sha256 -sign "$key" "${pass[@]+"${pass[@]}"}" -out "$KC_TMP/sig" "$stmt" 2>"$KC_TMP/err" ||
      kc_die "openssl dgst -sign failed: $(head -c 300 "$KC_TMP/err")"
    ;;
  *) kc_die "$key is not an Ed25519 or ECDSA P-256 key (kekd operators use one of these)" ;;
esac
kc_verify_sig "$alg" "$KC_TMP/pub.pem" "$stmt" "$KC_TMP/sig" ||
  kc_die "the signature just made does not verify against the key's public half (openssl problem?)"

if [[ -z $out ]]; then
  kname=$(basename -- "$key")
  kname=${kname%.pem}
  kname=${kname%.key}
  out="${stmt%.txt}.$kname.sig"
fi
[[ ! -d $out ]] || kc_die "--out $out is a directory"
printf '%s\n' "$(kc_b64_encode "$KC_TMP/sig")" >"$out.tmp.$$"
chmod 0644 "$out.tmp.$$"
mv -f -- "$out.tmp.$$" "$out"

sum=$(kc_sha256_text "$text")
what="${KS[action]}${KS[key]:+ ${KS[key]}}${KS[version]:+ version ${KS[version]}}"
kc_note "signed ceremony ${KS[id]} ($what), statement sha256:$sum"
kc_note "  with $alg key $fp"
printf 'signature: %s\n' "$out"
