#!/usr/bin/env python3
"""Every PromQL expression of loopd's dashboard and rules, one JSON object per line.

    python3 dashboards/exprs.py            # {"source": "panel <title>" | "record <name>" | "alert <name>", "expr": "..."}
    python3 dashboards/exprs.py --lint     # check the dashboard's conventions; exit 1 on any problem

Dashboard expressions get Grafana's variables substituted so they can be sent to Prometheus as they are:
$__rate_interval -> 1m, $__interval -> 15s, $instance and $loop -> .* . Any other `$` variable is an error
(--lint), because nothing outside Grafana could resolve it.

The rules file is read without a YAML library: an `expr:` is either on one line or a `|`/`>` block scalar
(the lines indented deeper than the key). loopd-rules.yml keeps to that.
Standard library only.
"""

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DASHBOARD = HERE / "loopd-overview.json"
RULES = HERE / "loopd-rules.yml"
README = HERE / "README.md"

SUBSTITUTIONS = [
    ("$__rate_interval", "1m"),
    ("${__rate_interval}", "1m"),
    ("$__interval", "15s"),
    ("${__interval}", "15s"),
    ("${instance}", ".*"),
    ("$instance", ".*"),
    ("${loop}", ".*"),
    ("$loop", ".*"),
]

# Metrics of DESIGN.md §4 that carry a `loop` label; every other loopd_* / process_* metric does not.
LOOP_LABELLED = re.compile(
    r"\bloopd_(loop_|phase_|handles|active_|request_duration|stall|callback_panics)\w*"
)
ANY_METRIC = re.compile(r"\b(loopd_\w+|process_\w+)")


def substitute(expr):
    for var, value in SUBSTITUTIONS:
        expr = expr.replace(var, value)
    return expr


def panels(dashboard):
    """All panels, rows' nested panels included, in order."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs(dashboard):
    """(panel title, raw expr) for every target of every panel."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield panel.get("title", ""), target.get("expr", "")


def _unquote(value):
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        body = value[1:-1]
        return body.replace("''", "'") if value[0] == "'" else json.loads(value)
    return value


def rule_exprs(text):
    """(kind, name, expr) for every rule; kind is "record" or "alert"."""
    lines = text.splitlines()
    out = []
    kind = name = None
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        m = re.match(r"^-?\s*(record|alert):\s*(.+?)\s*$", stripped)
        if m:
            kind, name = m.group(1), _unquote(m.group(2))
            i += 1
            continue
        m = re.match(r"^(\s*)(?:-\s+)?expr:\s*(.*?)\s*$", line)
        if m and not stripped.startswith("#"):
            indent, value = len(m.group(1)), m.group(2)
            if value[:1] in ("|", ">"):
                folded = value[0] == ">"
                body = []
                i += 1
                while i < len(lines):
                    nxt = lines[i]
                    if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                        break
                    body.append(nxt.strip())
                    i += 1
                expr = (" " if folded else "\n").join(part for part in body if part)
            else:
                expr = _unquote(value)
                i += 1
            if kind is None or name is None:
                raise ValueError(f"{RULES.name}: expr without a record/alert name: {expr!r}")
            out.append((kind, name, " ".join(expr.split())))
            kind = name = None
            continue
        i += 1
    return out


def all_exprs():
    dashboard = json.loads(DASHBOARD.read_text())
    for title, expr in dashboard_exprs(dashboard):
        yield {"source": f"panel {title}", "expr": substitute(expr)}
    for kind, name, expr in rule_exprs(RULES.read_text()):
        yield {"source": f"{kind} {name}", "expr": expr}


def github_slug(heading):
    slug = heading.strip().lower()
    slug = re.sub(r"[^\w\- ]", "", slug)
    return slug.replace(" ", "-")


def lint():
    problems = []
    dashboard = json.loads(DASHBOARD.read_text())
    if dashboard.get("schemaVersion", 0) < 39:
        problems.append("dashboard: schemaVersion must be >= 39")
    variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
    ds = variables.get("datasource", {})
    if ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problems.append("dashboard: needs a `datasource` variable of type datasource, query prometheus")
    for name in ("instance", "loop"):
        v = variables.get(name, {})
        if not (v.get("multi") and v.get("includeAll") and "label_values(" in str(v.get("query", ""))):
            problems.append(f"dashboard: variable `{name}` must be a multi, include-all label_values query")

    count = 0
    for panel in panels(dashboard):
        if panel.get("type") == "row":
            continue
        title = panel.get("title") or f"panel id {panel.get('id')}"
        if not panel.get("description", "").strip():
            problems.append(f"panel {title!r}: no description")
        if not panel.get("fieldConfig", {}).get("defaults", {}).get("unit"):
            problems.append(f"panel {title!r}: no unit")
        if panel.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"panel {title!r}: datasource is not ${{datasource}}")
        targets = panel.get("targets", [])
        if not targets:
            problems.append(f"panel {title!r}: no targets")
        for target in targets:
            count += 1
            expr = target.get("expr", "")
            where = f"panel {title!r} target {target.get('refId', '?')}"
            if not isinstance(expr, str) or not expr.strip():
                problems.append(f"{where}: empty expr")
                continue
            if target.get("datasource", {}).get("uid") != "${datasource}":
                problems.append(f"{where}: datasource is not ${{datasource}}")
            leftover = re.findall(r"\$\{?\w+", substitute(expr))
            if leftover:
                problems.append(f"{where}: unsupported variables {leftover}")
            # Every selector of a loopd or process metric filters by instance, and by loop where it has one.
            for m in re.finditer(r"\b((?:loopd|process)_\w+)(\{[^}]*\})?", expr):
                metric, matchers = m.group(1), m.group(2) or ""
                if 'instance=~"$instance"' not in matchers:
                    problems.append(f"{where}: {metric} not filtered by instance=~\"$instance\"")
                if LOOP_LABELLED.fullmatch(metric) and 'loop=~"$loop"' not in matchers:
                    problems.append(f"{where}: {metric} not filtered by loop=~\"$loop\"")
    if count == 0:
        problems.append("dashboard: no panel targets at all")

    # Every alert has severity, summary, description and a runbook_url whose anchor exists in README.md.
    rules_text = RULES.read_text()
    anchors = {github_slug(h) for h in re.findall(r"^#+\s+(.+)$", README.read_text(), re.M)} if README.exists() else set()
    blocks = re.split(r"^\s*-\s+(?=alert:|record:)", rules_text, flags=re.M)
    for block in blocks:
        m = re.match(r"alert:\s*(\S+)", block)
        if not m:
            continue
        alert = m.group(1)
        for key in ("severity:", "summary:", "description:", "runbook_url:"):
            if key not in block:
                problems.append(f"alert {alert}: no {key[:-1]}")
        url = re.search(r"runbook_url:\s*\"?([^\"\n]+)", block)
        if url:
            anchor = url.group(1).rsplit("#", 1)[-1]
            if "#" not in url.group(1) or anchor not in anchors:
                problems.append(f"alert {alert}: runbook anchor #{anchor} is not a heading of README.md")
            if anchor != alert.lower():
                problems.append(f"alert {alert}: runbook anchor should be #{alert.lower()}")
    if not rule_exprs(rules_text):
        problems.append("rules: no expressions found")

    for problem in problems:
        print(f"lint: {problem}", file=sys.stderr)
    return 1 if problems else 0


def main(argv):
    if argv[1:] == ["--lint"]:
        return lint()
    if argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    for item in all_exprs():
        print(json.dumps(item))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
