#!/usr/bin/env bash
# What a clock read costs on this machine: the TSC (`rdtsc`, what loopd's instrumentation
# reads after every callback and every poll), clock_gettime(CLOCK_MONOTONIC) (vDSO) and
# CLOCK_MONOTONIC_COARSE (what libuv's loop time uses). 10 million reads each, nanoseconds
# per read. Explains most of what instrumentation costs in loop_count (BENCHMARKS.md).
# Usage: bash bench/scripts/clock-cost.sh     Needs: cc.
set -euo pipefail
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat > "$dir/clock.c" <<'C'
#include <stdio.h>
#include <time.h>
#include <x86intrin.h>
static double ns(struct timespec a, struct timespec b, int n) {
  return ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n;
}
int main(void) {
  const int n = 10000000;
  struct timespec a, b, t;
  unsigned long long sink = 0;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (int i = 0; i < n; i++) sink += __rdtsc();
  clock_gettime(CLOCK_MONOTONIC, &b);
  printf("%-38s %5.1f ns\n", "rdtsc", ns(a, b, n));
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (int i = 0; i < n; i++) { clock_gettime(CLOCK_MONOTONIC, &t); sink += t.tv_nsec; }
  clock_gettime(CLOCK_MONOTONIC, &b);
  printf("%-38s %5.1f ns\n", "clock_gettime(CLOCK_MONOTONIC)", ns(a, b, n));
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (int i = 0; i < n; i++) { clock_gettime(CLOCK_MONOTONIC_COARSE, &t); sink += t.tv_nsec; }
  clock_gettime(CLOCK_MONOTONIC, &b);
  printf("%-38s %5.1f ns\n", "clock_gettime(CLOCK_MONOTONIC_COARSE)", ns(a, b, n));
  return (int)(sink & 0);
}
C
"${CC:-cc}" -O2 -o "$dir/clock" "$dir/clock.c"
"$dir/clock"
echo "clocksource: $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null || echo unknown)"
