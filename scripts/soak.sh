#!/usr/bin/env bash
# On-demand soak (not CI): runs the reliability tests (tests/tests/reliability.rs) over and
# over against fresh loopd daemons for MINUTES (default 10), stopping at the first failure.
# Catches rare races the single CI run misses. Usage: bash scripts/soak.sh [MINUTES]
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-10}"
cargo build -p loopd
cargo test -p loopd-tests --test reliability --no-run
end=$(( $(date +%s) + minutes * 60 ))
round=0
while [ "$(date +%s)" -lt "$end" ]; do
  round=$((round + 1))
  echo "soak round $round ($(( (end - $(date +%s)) / 60 )) min left)"
  cargo test -q -p loopd-tests --test reliability 2>&1 | tail -3
done
echo "soak passed: $round rounds in $minutes min"
