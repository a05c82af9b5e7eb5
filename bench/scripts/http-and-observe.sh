#!/usr/bin/env bash
# Side-by-side benchmarks that need whole servers rather than engine peers:
#  1. static files: wrk against loopd's `http` service vs a Node.js http+createReadStream
#     server, alternating runs, medians and the ratio loopd ÷ node (> 1: loopd better);
#  2. what observing costs: control-socket `handles` time (loopctl, a JSON list of every
#     handle) with 10 and with 10,000 open connections;
#  3. stall detection: time until /metrics shows a stall in progress.
# The `/metrics` scrape and control `status` times with 10 and 10,000 connections (and ping-pong
# at --loops 1 vs 2) are measured by the harness itself: `cargo run --release -p loopd-bench --
# --daemon` (bench/src/daemon.rs); this script no longer measures the scrape.
# Usage: bash bench/scripts/http-and-observe.sh [--reps N] [--duration SECONDS]
# Needs: wrk (Debian `wrk`), node, python3, bc. Builds loopd and loopctl in release mode.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPS=3
DURATION=8
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) REPS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    *) echo "usage: $0 [--reps N] [--duration SECONDS]" >&2; exit 2 ;;
  esac
done
for tool in wrk node python3 bc; do
  command -v "$tool" >/dev/null || { echo "missing $tool (Debian: apt-get install -y $tool)" >&2; exit 1; }
done
cargo build --release -q -p loopd -p loopctl

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

mkdir -p "$WORK/www"
head -c 1024 /dev/urandom > "$WORK/www/small.bin"
head -c $((256 * 1024)) /dev/urandom > "$WORK/www/medium.bin"
head -c $((4 * 1024 * 1024)) /dev/urandom > "$WORK/www/large.bin"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP_PORT=$(free_port); METRICS_PORT=$(free_port)
cat > "$WORK/loopd.toml" <<TOML
metrics_addr = "127.0.0.1:$METRICS_PORT"
control = "$WORK/control.sock"
log = "warn"
[[service]]
kind = "http"
bind = "127.0.0.1:$HTTP_PORT"
root = "$WORK/www"
[[service]]
kind = "seq"
bind = "127.0.0.1:0"
[[service]]
kind = "prime"
bind = "127.0.0.1:0"
mode = "inline"
TOML
bash -c "ulimit -n 20000 2>/dev/null || ulimit -n \$(ulimit -Hn); exec target/release/loopd --config $WORK/loopd.toml" 2>"$WORK/loopd.log" &
PIDS+=($!)
node bench/peers/node/static.js "$WORK/www" > "$WORK/node.port" &
PIDS+=($!)
for _ in $(seq 100); do
  [ -s "$WORK/node.port" ] && [ -S "$WORK/control.sock" ] && break
  sleep 0.1
done
NODE_PORT=$(head -1 "$WORK/node.port")

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
rps() { wrk -t2 -c32 -d"${DURATION}s" "$1" | awk '/Requests\/sec/ {print $2}'; }

echo "== static files: wrk -t2 -c32 -d${DURATION}s, $REPS runs each, alternating (requests/s, higher is better)"
printf '%-12s %14s %14s %10s\n' file loopd node "loopd÷node"
for f in small.bin medium.bin large.bin; do
  : > "$WORK/l"; : > "$WORK/n"
  for _ in $(seq "$REPS"); do
    rps "http://127.0.0.1:$HTTP_PORT/$f" >> "$WORK/l"
    rps "http://127.0.0.1:$NODE_PORT/$f" >> "$WORK/n"
  done
  L=$(median < "$WORK/l"); N=$(median < "$WORK/n")
  printf '%-12s %14.0f %14.0f %10.2f\n' "$f" "$L" "$N" "$(echo "$L / $N" | bc -l)"
done

handles_ms() {
  for _ in $(seq 10); do
    local t0 t1
    t0=$(date +%s%N)
    target/release/loopctl --socket "$WORK/control.sock" handles --json --limit 100000 >/dev/null
    t1=$(date +%s%N)
    echo $(( (t1 - t0) / 1000 ))
  done | median | awk '{printf "%.1f", $1/1000}'
}
SEQ_PORT=$(target/release/loopctl --socket "$WORK/control.sock" status --json | python3 -c 'import json,sys; s=json.load(sys.stdin); print([x["bind"] for x in s["services"] if x["name"]=="seq"][0].split(":")[1])')

echo
echo "== observing: control \`handles\` (median ms) with N open connections (scrape: loopd-bench --daemon)"
printf '%-14s %14s\n' connections "handles ms (loopctl, whole process)"
for n in 10 10000; do
  python3 - "$SEQ_PORT" "$n" "$WORK/held" <<'PY' &
import resource, socket, sys, time, os
port, n, flag = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 1000), hard))
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
open(flag, "w").write(str(len(socks)))
while os.path.exists(flag):
    time.sleep(0.2)
PY
  HOLDER=$!
  for _ in $(seq 600); do [ -s "$WORK/held" ] && break; sleep 0.1; done
  sleep 1.5  # two publications, so the counts include the new connections
  printf '%-14s %14s\n' "$(cat "$WORK/held")" "$(handles_ms)"
  rm -f "$WORK/held"; wait "$HOLDER" || true
done
PRIME_PORT=$(target/release/loopctl --socket "$WORK/control.sock" status --json | python3 -c 'import json,sys; s=json.load(sys.stdin); print([x["bind"] for x in s["services"] if x["name"]=="prime"][0].split(":")[1])')
echo
echo "== stall detection: a prime computed inline blocks the loop; time from sending it until"
echo "   /metrics shows loopd_stall_in_progress_seconds > 0 (threshold 100 ms; target <= 120 ms)"
python3 - "$PRIME_PORT" "$METRICS_PORT" "$REPS" <<'PY'
import socket, sys, time, urllib.request, statistics
prime_port, metrics_port, reps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def in_progress():
    body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    return sum(float(l.rsplit(" ", 1)[1]) for l in body.splitlines() if l.startswith("loopd_stall_in_progress_seconds{"))
seen = []
for _ in range(max(3, reps)):
    s = socket.create_connection(("127.0.0.1", prime_port))
    s.sendall(b"7\n"); s.recv(100)                      # connected and served
    t0 = time.monotonic()
    s.sendall(b"400000000000000013\n")                   # about a second of trial division
    while in_progress() == 0:
        time.sleep(0.002)
    seen.append((time.monotonic() - t0) * 1000)
    s.recv(100); s.close()                               # wait for the stall to end
    time.sleep(0.3)
print("   visible after (ms): " + ", ".join(f"{x:.1f}" for x in seen) + f"  — median {statistics.median(seen):.1f}")
PY
echo
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs"
