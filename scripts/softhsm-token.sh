#!/usr/bin/env bash
# Creates a SoftHSM token in its own directory, never in the system-wide one.
#
#   scripts/softhsm-token.sh DIR [LABEL]
#
# Writes DIR/softhsm2.conf (from hsm-config/softhsm2.conf.in), DIR/tokens/ and DIR/pin (mode 0600,
# a random user PIN). Prints the shell line that selects the token: export SOFTHSM2_CONF=...
# Reuses an existing token with the same label in DIR instead of failing, so it can run twice.
set -euo pipefail

dir=${1:?usage: softhsm-token.sh DIR [LABEL]}
label=${2:-kekd}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
template="$here/../hsm-config/softhsm2.conf.in"

mkdir -p "$dir/tokens"
dir=$(cd "$dir" && pwd)
chmod 700 "$dir" "$dir/tokens"
sed "s|@TOKEN_DIR@|$dir/tokens|" "$template" >"$dir/softhsm2.conf"
export SOFTHSM2_CONF="$dir/softhsm2.conf"

if softhsm2-util --show-slots 2>/dev/null | grep -qE "Label:[[:space:]]*${label}[[:space:]]*$"; then
  echo "export SOFTHSM2_CONF=$SOFTHSM2_CONF"
  exit 0
fi

umask 077
# The PINs are random and never appear on a command line of ours that outlives this script;
# softhsm2-util only takes them as arguments, so this brief exposure is confined to token set-up.
pin=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
so_pin=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
printf '%s' "$pin" >"$dir/pin"
printf '%s' "$so_pin" >"$dir/so-pin"
softhsm2-util --init-token --free --label "$label" --pin "$pin" --so-pin "$so_pin" >/dev/null
echo "export SOFTHSM2_CONF=$SOFTHSM2_CONF"
