#!/usr/bin/env bash
# Offline checks of loopd's dashboard and Prometheus rules. Works from any directory.
#   bash dashboards/check.sh
# Needs promtool (Debian: `apt-get install prometheus`) and python3. Exits non-zero on any failure,
# after running every check, so one run shows every problem.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
cd "$root" || exit 1
dir="${here#"$root"/}"   # "dashboards", for messages and promtool paths

if ! command -v promtool >/dev/null 2>&1; then
  echo "check.sh: promtool not found. Install it with: apt-get install prometheus (Debian/Ubuntu)," >&2
  echo "          or put the promtool of a Prometheus release on PATH." >&2
  exit 1
fi
if ! command -v python3 >/dev/null 2>&1; then
  echo "check.sh: python3 not found (needed to read the dashboard JSON)." >&2
  exit 1
fi

failed=()
step() {
  local name="$1"; shift
  echo "== $name"
  if "$@"; then
    echo "   ok"
  else
    echo "   FAILED: $name" >&2
    failed+=("$name")
  fi
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

step "promtool check rules" promtool check rules "$dir/loopd-rules.yml"
step "promtool test rules" promtool test rules "$dir/loopd-rules.test.yml"
step "promtool check config (example scrape config)" promtool check config "$dir/prometheus.yml"

parse_json() {
  if command -v jq >/dev/null 2>&1; then
    jq empty "$dir/loopd-overview.json"
  else
    python3 -m json.tool "$dir/loopd-overview.json" >/dev/null
  fi
}
step "dashboard JSON parses" parse_json

# Every panel target has a non-empty expr, every selector filters by $instance (and $loop), every panel
# has a unit and description, every alert has a runbook anchor present in README.md.
step "dashboard and rules conventions (exprs.py --lint)" python3 "$dir/exprs.py" --lint

# Compile every dashboard expression (variables substituted) by wrapping each in a recording rule.
compile_dashboard_exprs() {
  python3 "$dir/exprs.py" >"$tmp/exprs.jsonl" || return 1
  python3 - "$tmp/exprs.jsonl" "$tmp/dashboard-exprs.yml" <<'EOF' || return 1
import json, sys
items = [json.loads(line) for line in open(sys.argv[1])]
panels = [i for i in items if i["source"].startswith("panel ")]
if not panels:
    sys.exit("no panel expressions found")
with open(sys.argv[2], "w") as out:
    out.write("groups:\n  - name: dashboard-exprs\n    rules:\n")
    for n, item in enumerate(panels):
        out.write(f"      - record: dashboard:expr_{n}\n")
        out.write(f"        expr: {json.dumps(item['expr'])}\n")
        out.write(f"        labels: {{source: {json.dumps(item['source'])}}}\n")
print(f"   {len(panels)} panel expressions")
EOF
  promtool check rules "$tmp/dashboard-exprs.yml"
}
step "dashboard expressions are valid PromQL" compile_dashboard_exprs

if [ ${#failed[@]} -gt 0 ]; then
  echo "check.sh: ${#failed[@]} check(s) failed: ${failed[*]}" >&2
  exit 1
fi
echo "check.sh: all checks passed"
