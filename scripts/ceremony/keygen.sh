#!/usr/bin/env bash
# Generates an operator key pair for kekd ceremonies. See --help.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

usage() {
  cat <<'EOF'
Usage: keygen.sh NAME [--ecdsa] [--dir DIR] [--encrypt [--passout ARG]]

Generates a kekd ceremony operator key pair with openssl, offline:
  DIR/NAME.key       private key (PKCS#8 PEM, mode 0600) -- never leaves your machine
  DIR/NAME.pub.pem   public key (PEM SubjectPublicKeyInfo) -- send this to the ceremony administrator

and prints the public key path and its fingerprint, sha256:<hex of SHA-256 of the DER
SubjectPublicKeyInfo>. Read the fingerprint to the administrator over a second channel (phone, in
person) so that the public key you sent can be checked.

  NAME            operator name: [a-z0-9][a-z0-9_.-]{0,63}, e.g. alice
  --ecdsa         ECDSA P-256 instead of the default Ed25519
  --dir DIR       where to write the files (default: the current directory; created mode 0700)
  --encrypt       protect the private key with a passphrase (AES-256; openssl asks for it)
  --passout ARG   passphrase source for --encrypt in openssl syntax (env:VAR, file:PATH, stdin),
                  for non-interactive use; implies --encrypt
  -h, --help      this text

Existing files are never overwritten. Keys on a smartcard are made with the card's own tools
(see docs/ceremony.md, "Signing with a smartcard").
EOF
}

name="" ecdsa=0 dir="." encrypt=0 passout=""
kc_split_eq "$@"
set -- "${KC_ARGS[@]+"${KC_ARGS[@]}"}"
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --ecdsa) ecdsa=1; shift ;;
    --dir) kc_needval "$@"; dir=$2; shift 2 ;;
    --encrypt) encrypt=1; shift ;;
    --passout) kc_needval "$@"; passout=$2; encrypt=1; shift 2 ;;
    -*) kc_usage_error "unknown option $1" ;;
    *) [[ -z $name ]] || kc_usage_error "unexpected argument '$1'"; name=$1; shift ;;
  esac
done
[[ -n $name ]] || kc_usage_error "missing NAME"
[[ $name =~ $KC_RE_OPNAME ]] || kc_usage_error "operator name '$name' must match [a-z0-9][a-z0-9_.-]{0,63}"
# The passphrase is needed twice (generate, then derive the public key): stdin can be read once.
[[ $passout != stdin ]] || kc_usage_error "--passout stdin cannot be read twice; use env:VAR or file:PATH"
kc_need openssl sha256sum
kc_tmpdir

if [[ ! -d $dir ]]; then
  mkdir -p -- "$dir" && chmod 0700 -- "$dir" || kc_die "cannot create directory $dir"
fi
key="$dir/$name.key"
pub="$dir/$name.pub.pem"
for f in "$key" "$pub"; do
  [[ ! -e $f ]] || kc_die "$f already exists; refusing to overwrite a key (choose another --dir or NAME)"
done

if ((ecdsa)); then
  alg="ecdsa-p256"
  gen=(-algorithm EC -pkeyopt ec_paramgen_curve:P-256 -pkeyopt ec_param_enc:named_curve)
else
  alg=ed25519
  gen=(-algorithm ed25519)
fi
if ((encrypt)); then
  gen+=(-aes-256-cbc)
  [[ -n $passout ]] && gen+=(-pass "$passout")
fi

# umask 077 (lib.sh): the key file is created 0600 and never readable by anyone else, even briefly.
# Write to a temporary name in the same directory, then rename, so a failure leaves nothing behind.
tmpkey="$dir/.$name.key.tmp.$$"
trap 'rm -f -- "$tmpkey"; rm -rf -- "$KC_TMP"' EXIT
openssl genpkey "${gen[@]}" -out "$tmpkey" 2>"$KC_TMP/err" ||
  kc_die "openssl genpkey failed: $(head -c 300 "$KC_TMP/err")"
chmod 0600 "$tmpkey"

passin=()
if ((encrypt)) && [[ -n $passout ]]; then passin=(-passin "$passout"); fi
openssl pkey -in "$tmpkey" "${passin[@]+"${passin[@]}"}" -pubout -out "$KC_TMP/pub.pem" 2>"$KC_TMP/err" ||
  kc_die "cannot derive the public key: $(head -c 300 "$KC_TMP/err")"
mv -- "$tmpkey" "$key"
cp -- "$KC_TMP/pub.pem" "$pub"
chmod 0644 "$pub"

kc_pub_der "$pub" "$KC_TMP/pub.der" || kc_die "$KC_ERR"
kc_pub_algorithm "$pub" || kc_die "$KC_ERR"
[[ $KC_ALG == "$alg" ]] || kc_die "openssl produced a $KC_ALG key, expected $alg"
fp=$(kc_fingerprint "$KC_TMP/pub.der")

kc_note "operator $name: $alg key pair generated"
kc_note "  private key: $key (mode 0600; keep it offline, never send it)"
printf 'public key: %s\n' "$pub"
printf 'fingerprint: %s\n' "$fp"
