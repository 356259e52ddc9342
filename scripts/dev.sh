#!/usr/bin/env bash
# Runs kekd for development and demos, all under ./var/:
#   a SoftHSM token, three demo operators (Ed25519 keys made by openssl), kekd init with a 2-of-3
#   quorum, kekd serve on 127.0.0.1:8200, and a create-key ceremony for the key "demo" signed by
#   two of the operators through scripts/ceremony/. kekd stays in the foreground: Ctrl-C stops it.
#   Then it creates a demo application client with every operation on "demo" and prints
#   ready-to-paste curl and kekctl commands that use it.
# Running it again reuses ./var/ (same token, operators, admin credential, keys, demo client).
#
# For the end-to-end test of this script (tests/e2e/test_dev_script.py) three variables override
# the defaults: KEKD_DEV_VAR (the state directory), KEKD_DEV_PORT (the port) and KEKD_DEV_BUILD (an
# existing build directory holding kekd and kekctl: nothing is installed or built).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
var="${KEKD_DEV_VAR:-$root/var}"
port="${KEKD_DEV_PORT:-8200}"
addr="http://127.0.0.1:$port"
ceremony="$root/scripts/ceremony"

if [ -n "${KEKD_DEV_BUILD:-}" ]; then
  build="$KEKD_DEV_BUILD"
else
  build="$root/build-dev"
  bash "$root/scripts/install-deps.sh"
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKEKD_BUILD_TESTS=OFF >/dev/null
  cmake --build "$build" --parallel "$(nproc)" --target kekd kekctl
fi
kekd="$build/kekd"
kekctl="$build/kekctl"

mkdir -p "$var"
chmod 700 "$var"
eval "$(bash "$root/scripts/softhsm-token.sh" "$var/token" kekd)"  # exports SOFTHSM2_CONF

if [ ! -f "$var/admin.token" ]; then
  echo "== first run: creating demo operators and initialising kekd in $var"
  rm -f "$var/kekd.db" "$var/kekd.db-wal" "$var/kekd.db-shm"
  mkdir -p "$var/operators"
  : >"$var/operators.toml"
  for op in alice bob carol; do
    [ -f "$var/operators/$op.key" ] || bash "$ceremony/keygen.sh" "$op" --dir "$var/operators" >/dev/null
    printf '[[operator]]\nname = "%s"\npublic_key = "operators/%s.pub.pem"\n\n' "$op" "$op" \
      >>"$var/operators.toml"
  done
  cat >"$var/kekd.toml" <<TOML
# Development configuration made by scripts/dev.sh; every key: hsm-config/kekd.example.toml
[server]
listen = "127.0.0.1:$port"

[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "kekd"
pin_file = "token/pin"
sessions = 4

[store]
path = "kekd.db"

[ceremony]
ttl = "24h"
TOML
  "$kekd" init --config "$var/kekd.toml" --operators "$var/operators.toml" --threshold 2 \
    --admin-credential-out "$var/admin.token"
fi

if curl -fsS "$addr/v1/health" >/dev/null 2>&1; then
  echo "something already listens on $addr (another kekd?); stop it first" >&2
  exit 1
fi

# kekd serve in the environment a production kekd gets (hsm-config/kekd.env); exec keeps $! its pid.
(set -a && . "$root/hsm-config/kekd.env" && exec "$kekd" serve --config "$var/kekd.toml") &
kekd_pid=$!
trap 'kill -TERM "$kekd_pid" 2>/dev/null || true; code=0; wait "$kekd_pid" || code=$?; exit $code' INT TERM
ready=no
for _ in $(seq 1 100); do
  curl -fsS "$addr/v1/ready" >/dev/null 2>&1 && { ready=yes; break; }
  kill -0 "$kekd_pid" 2>/dev/null || { echo "kekd exited; see the messages above" >&2; exit 1; }
  sleep 0.1
done
if [ "$ready" != yes ]; then
  echo "kekd is not ready on $addr after 10 s (its listen address is in $var/kekd.toml)" >&2
  kill -TERM "$kekd_pid" 2>/dev/null || true
  exit 1
fi

export KEKD_ADDR="$addr"
KEKD_TOKEN=$(cat "$var/admin.token")
export KEKD_TOKEN

if ! curl -fsS -H "Authorization: Bearer $KEKD_TOKEN" "$addr/v1/keys/demo" >/dev/null 2>&1; then
  echo "== create-key ceremony for 'demo', approved by alice and bob (2 of 3)"
  id=$(bash "$ceremony/propose.sh" create-key demo 2>/dev/null)
  bash "$ceremony/show.sh" "$id" --out "$var/statement-$id.txt" >/dev/null
  for op in alice bob; do
    bash "$ceremony/sign.sh" "$var/statement-$id.txt" "$var/operators/$op.key" \
      --out "$var/statement-$id.$op.sig" >/dev/null
    bash "$ceremony/approve.sh" "$id" "$op" "$var/statement-$id.$op.sig"
  done
  bash "$ceremony/transcript.sh" "$id" --out "$var/transcript-$id.json" >/dev/null
  bash "$ceremony/audit-key.sh" --out "$var/kekd-audit.pub.pem" >/dev/null
  bash "$ceremony/verify-transcript.sh" "$var/transcript-$id.json" \
    --kekd-key "$var/kekd-audit.pub.pem" --quiet
fi

cat <<TEXT

kekd is running on $addr (Ctrl-C stops it)

  config            $var/kekd.toml
  token             $var/token (SoftHSM; user PIN in $var/token/pin)
  store             $var/kekd.db
  admin credential  $var/admin.token
  operators         $var/operators/{alice,bob,carol}.key  (2 of 3 approve)

Try, in another shell:

  export KEKD_ADDR=$addr KEKD_TOKEN=\$(cat $var/admin.token)
  curl -s -H "Authorization: Bearer \$KEKD_TOKEN" \$KEKD_ADDR/v1/keys/demo | jq .
  curl -s -H "Authorization: Bearer \$KEKD_TOKEN" \$KEKD_ADDR/v1/operators | jq .
  scripts/ceremony/propose.sh rotate-key demo        # then show.sh, sign.sh, approve.sh
  curl -s \$KEKD_ADDR/metrics | head

A walkthrough of ceremonies: docs/ceremony.md
TEXT

# The demo application client: what an application would hold. Its credential is kept in a 0600
# file and reused on the next run, unless it no longer authenticates (deleted by hand).
client_file="$var/demo-client.token"
if [ ! -f "$client_file" ] || ! curl -fsS -H "Authorization: Bearer $(cat "$client_file")" \
  "$addr/v1/keys/demo" >/dev/null 2>&1; then
  (umask 077 && curl -fsS -H "Authorization: Bearer $KEKD_TOKEN" \
    -d '{"grants":[{"key":"demo","operations":["datakey","wrap","unwrap","rewrap","describe"]}]}' \
    "$addr/v1/clients" | jq -r .token >"$client_file")
fi

# Everything between the two marker lines is pasted as is by tests/e2e/test_dev_script.py.
cat <<TEXT

As the demo application (a client granted datakey, wrap, unwrap, rewrap and describe on "demo"):

# --- try as the demo application ---
export KEKD_ADDR=$addr KEKD_TOKEN=\$(cat $client_file)
dk=\$(curl -s -H "Authorization: Bearer \$KEKD_TOKEN" -d '{"bytes":32,"context":{"tenant":"acme"}}' \$KEKD_ADDR/v1/keys/demo/datakey)
echo "\$dk" | jq .
curl -s -H "Authorization: Bearer \$KEKD_TOKEN" -d "\$(echo "\$dk" | jq '{ciphertext, context: {tenant: "acme"}}')" \$KEKD_ADDR/v1/keys/demo/unwrap | jq .
$kekctl datakey demo --context tenant=acme
$kekctl seal --key demo --context tenant=acme $root/README.md $var/demo-readme.sealed
$kekctl open --context tenant=acme $var/demo-readme.sealed $var/demo-readme.opened && cmp $root/README.md $var/demo-readme.opened && echo "sealed and opened: identical"
# the same key through the AWS KMS API (docs/aws-kms.md): client id and secret as the AWS key pair
export AWS_ACCESS_KEY_ID=\${KEKD_TOKEN%%.*} AWS_SECRET_ACCESS_KEY=\${KEKD_TOKEN#*.} AWS_DEFAULT_REGION=us-east-1
aws --endpoint-url \$KEKD_ADDR kms generate-data-key --key-id alias/demo --key-spec AES_256 --encryption-context tenant=acme
# --- end ---

kekctl reference: docs/kekctl.md; the whole API: docs/api.md
TEXT

wait "$kekd_pid"
