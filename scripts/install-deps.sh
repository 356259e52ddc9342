#!/usr/bin/env bash
# Installs every build, test and run dependency of kekd from Debian 12's archive (DESIGN §1).
# Idempotent: packages already present are not touched, and apt-get is not called at all when
# nothing is missing. Works as root or through sudo.
set -euo pipefail

PACKAGES=(
  # build
  g++ cmake ninja-build pkg-config clang-format
  # libraries (DESIGN §1)
  libp11-kit-dev libbotan-2-dev libboost-dev libssl-dev nlohmann-json3-dev
  libsqlite3-dev libtomlplusplus-dev libcli11-dev libspdlog-dev
  # sanitizer runtimes for g++ 12 (scripts/sanitizers.sh); g++ already brings them on amd64
  libasan8 libubsan1 libtsan2 liblsan0
  # the development and test token
  softhsm2
  # tests and independent oracles
  doctest-dev opensc openssl python3-pykcs11 python3-cryptography python3-yaml sqlite3 curl jq
  # KMS compatibility tests, benchmark load generator
  awscli python3-boto3 wrk
  # fuzzing (scripts/fuzz.sh): clang 14, its libFuzzer/ASan/UBSan runtimes (libclang_rt.fuzzer
  # and friends are in libclang-rt-14-dev), and llvm-symbolizer (llvm-14) for readable reports
  clang-14 libclang-rt-14-dev llvm-14
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

# Node.js and npm, for the AWS SDK for JavaScript and AWS Encryption SDK test (tests/kms-js,
# installed from npm by scripts/kms-js-setup.sh; the pinned packages support Node 18 and later).
# These are checked by command, not with dpkg: a machine may have node from elsewhere, and then
# nothing is installed. NodeSource's `nodejs` package, for one, bundles its own npm and declares
# `Conflicts: npm`, so listing `npm` in PACKAGES would make apt-get refuse to run there. Only a
# missing command brings in Debian's package (nodejs 18 and npm 9 on Debian 12).
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present, and node and npm"
  exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  SUDO=(sudo)
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
