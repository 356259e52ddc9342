#!/usr/bin/env bash
# Installs the JavaScript clients of kekd's AWS KMS API test (tests/kms-js: the AWS SDK for
# JavaScript v3 and the AWS Encryption SDK for JavaScript) from the npm registry, exactly as
# tests/kms-js/package-lock.json pins them, into tests/kms-js/node_modules (ignored by git).
#
#   scripts/kms-js-setup.sh
#
# Idempotent and fast when nothing changed: after a successful `npm ci` the SHA-256 of package.json
# and package-lock.json is kept in node_modules/.kekd-lock-sha256, and a later run whose files have
# the same hash does nothing (an edited package.json out of step with the lock makes `npm ci` fail).
# npm's cache, and its logs, are in $root/.cache/npm (ignored too): nothing is written to $HOME.
# Concurrent runs (ctest --parallel, several build directories) are serialised with flock.
#
# Fails, never skips, when node or npm is missing: scripts/install-deps.sh installs them.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=$root/tests/kms-js
lock=$dir/package-lock.json
stamp=$dir/node_modules/.kekd-lock-sha256

die() {
  echo "kms-js-setup: $*" >&2
  exit 1
}

command -v node >/dev/null 2>&1 || die "node is missing (scripts/install-deps.sh installs it)"
command -v npm >/dev/null 2>&1 || die "npm is missing (scripts/install-deps.sh installs it)"
major=$(node -p 'process.versions.node.split(".")[0]') || die "node does not run"
[ "$major" -ge 18 ] || die "node $(node --version) is too old: the packages need node 18 or later"
[ -f "$lock" ] || die "$lock is missing"

export npm_config_cache=$root/.cache/npm
export npm_config_update_notifier=false
export npm_config_fund=false
export npm_config_audit=false
mkdir -p "$npm_config_cache"

want=$(cat "$dir/package.json" "$lock" | sha256sum | cut -d' ' -f1)
exec 9>"$npm_config_cache/kms-js-setup.lock"
flock 9

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "kms-js-setup: $dir/node_modules matches package.json and package-lock.json"
  exit 0
fi

echo "kms-js-setup: npm ci in $dir (node $(node --version), npm $(npm --version))"
rm -f "$stamp"
# --ignore-scripts: nothing in the tree needs an install script, and none should run.
(cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=warn) ||
  die "npm ci failed in $dir"
echo "$want" >"$stamp"
echo "kms-js-setup: installed the packages of package-lock.json"
