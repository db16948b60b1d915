#!/usr/bin/env bash
# Installs the Debian packages infergate needs to build and test. Idempotent: a no-op
# (no apt-get call at all) when everything is already installed.
set -euo pipefail

PACKAGES=(
  # toolchain
  g++ cmake ninja-build ccache pkg-config make
  # libraries (see DEVELOPERS.md: checked to build together with g++ 12 in C++20)
  libboost1.81-dev libnghttp2-dev libssl-dev libsimdjson-dev prometheus-cpp-dev
  libyaml-cpp-dev libfmt-dev doctest-dev libxxhash-dev libbenchmark-dev
  # infergate's malloc (INFERGATE_TCMALLOC; the runtime library is all the build needs)
  libtcmalloc-minimal4
  # real clients used by the integration tests
  curl python3 procps openssl
  # HTTP/2 clients of the integration tests (nghttp, h2load)
  nghttp2-client
  # packaging checks (tests/integration/test_packaging.py)
  python3-yaml docker-compose
  # style check (scripts/check-format.sh)
  clang-format
  # data-plane benchmark and its ctest smoke (bench/e2e/dataplane.py): peer proxies, the
  # fixed-response backend (nginx), load generators (wrk; h2load is in nghttp2-client),
  # taskset (util-linux) and the syscall counter (perf is in linux-perf)
  nginx haproxy h2o wrk util-linux linux-perf
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
