#!/usr/bin/env bash
# Runs the engine's test binaries under Valgrind memcheck: invalid reads/writes, uses of
# uninitialised memory, bad frees and definite/indirect leaks fail the run.
#
#   bash scripts/memcheck.sh                 # the default engine tests (below)
#   bash scripts/memcheck.sh timer tcp       # only these test targets of the loopd package
#   MEMCHECK_FILTER=timers bash scripts/memcheck.sh timer   # only matching test names
#
# How: `cargo test --no-run --message-format=json` builds the test binaries and names them;
# each runs under `valgrind --error-exitcode=1 --leak-check=full` with `--test-threads=1`
# (Valgrind serialises threads anyway; one test at a time keeps reports readable), and
# `--max-threads=3000` (the pool tests resize up to the 1024-worker limit).
# `--errors-for-leak-kinds=definite,indirect`: "possibly lost" and "still reachable" blocks
# are what Rust's and glibc's process-lifetime allocations look like (thread-locals, the test
# harness' output capture, lazily initialised statics) and do not fail the run.
# scripts/memcheck.supp suppresses only clearly external noise; each entry says why.
#
# Needs valgrind (apt-get install valgrind; installed here when missing and running as root).
# Takes a few minutes: code under memcheck runs 20-50x slower. Logs: target/memcheck/.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v valgrind >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
  else
    echo "memcheck: valgrind is not installed (apt-get install valgrind)" >&2
    exit 2
  fi
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(loop_run timer async_handle tcp udp fs pool)
fi

args=()
for t in "${targets[@]}"; do args+=(--test "$t"); done

# Build, and collect the test executables cargo reports.
mapfile -t bins < <(
  cargo test -p loopd "${args[@]}" --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        print(m["executable"])
'
)
if [ ${#bins[@]} -eq 0 ]; then
  echo "memcheck: no test binaries built (cargo test --no-run failed?)" >&2
  cargo test -p loopd "${args[@]}" --no-run
  exit 2
fi

supp="$(pwd)/scripts/memcheck.supp"
logdir="${MEMCHECK_LOGS:-target/memcheck}"
mkdir -p "$logdir"
failed=()
for bin in "${bins[@]}"; do
  name="$(basename "$bin")"
  log="$logdir/$name.log"
  echo "memcheck: $name"
  start=$(date +%s)
  # shellcheck disable=SC2086
  if valgrind \
      --error-exitcode=1 \
      --leak-check=full \
      --show-leak-kinds=definite,indirect \
      --errors-for-leak-kinds=definite,indirect \
      --track-origins=yes \
      --max-threads=3000 \
      --suppressions="$supp" \
      --log-file="$log" \
      "$bin" --test-threads=1 ${MEMCHECK_FILTER:-} >"$logdir/$name.out" 2>&1; then
    echo "  ok ($(( $(date +%s) - start )) s; $(grep -m1 'ERROR SUMMARY' "$log" | sed 's/==[0-9]*== //'))"
  else
    echo "  FAILED ($(( $(date +%s) - start )) s): see $log and $logdir/$name.out"
    grep -E 'ERROR SUMMARY|definitely lost|indirectly lost|Invalid|uninitialised|test result' "$log" "$logdir/$name.out" | head -20 || true
    failed+=("$name")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "memcheck: ${#failed[@]} of ${#bins[@]} binaries failed: ${failed[*]}"
  exit 1
fi
echo "memcheck: ${#bins[@]} binaries clean"
