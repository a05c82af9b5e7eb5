#!/usr/bin/env bash
# On-demand soak (not CI): ONE release loopd under mixed load for MINUTES (default 10; `1` is
# the short mode) — seq, prime (pool and inline), http, /metrics scrapes, control clients and a
# subscriber — with its RSS sampled every few seconds. Fails on any wrong answer, on RSS leaving
# ±10 % of its post-warm-up value, on handles/requests not back to baseline afterwards, or on
# loopd not exiting 0 on SIGTERM. The load generator is tests/tests/soak.rs.
# Usage: bash scripts/soak.sh [MINUTES]
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-10}"
cargo build --release -p loopd
LOOPD_SOAK_MINUTES="$minutes" cargo test --release -p loopd-tests --test soak -- \
  --ignored --exact soak --nocapture
