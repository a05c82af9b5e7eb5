#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need, then runs everything.
# README.md and .ci/run call exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v promtool >/dev/null 2>&1 || need_pkgs+=(prometheus)
command -v tmux >/dev/null 2>&1 || need_pkgs+=(tmux)
command -v wrk >/dev/null 2>&1 || need_pkgs+=(wrk)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
# setpriv runs a client as a second user (tests/tests/other_user.rs; needs root to switch).
command -v setpriv >/dev/null 2>&1 || need_pkgs+=(util-linux)
pkg-config --exists libuv 2>/dev/null || need_pkgs+=(libuv1-dev pkg-config)
# The agent's tests build C programs against libuv and run Debian's uvloop with Debian's
# interpreter (tests/tests/agent.rs).
command -v cc >/dev/null 2>&1 || need_pkgs+=(gcc libc6-dev)
/usr/bin/python3 -c 'import uvloop' >/dev/null 2>&1 || need_pkgs+=(python3 python3-uvloop)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "installing test dependencies: ${need_pkgs[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

cargo build --workspace --all-targets
# Every public item documented and every doc link resolving (doctests run with the tests).
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --quiet
cargo test --workspace
