"""Offline checks of the Grafana dashboard (deploy/grafana/ollama-lb.json).

No Grafana runs here, so this checks what Grafana would trip over and what
would make the dashboard lie: dashboard JSON with a schemaVersion, unique
panel ids, panels inside the 24-column grid without overlaps, every panel
and query on the ${datasource} variable, every query parsed by a PromQL
parser, and every metric queried listed in docs/operations.md's table.

usage: check_grafana.py REPO_ROOT
"""

import json
import re
import sys
from pathlib import Path

import promql_parser

KINDS = {"row", "stat", "timeseries", "table", "gauge", "bargauge"}
DATASOURCE = "${datasource}"
# Metric names in queries and in the documentation's table.
METRIC = re.compile(r"\b((?:ollama_lb|envoy)_[a-z0-9_]+)\b")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def documented(root: Path) -> set[str]:
    """Metric names in the first column of docs/operations.md's table."""
    names = set()
    for line in (root / "docs/operations.md").read_text().splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            names.update(METRIC.findall(first))
    return names


def substitute(expr: str, variables: list[str]) -> str:
    """The query with dashboard variables replaced, as Grafana sends it."""
    for v in variables:
        expr = expr.replace("$" + v, "x").replace("${" + v + "}", "x")
    return expr


def check(root: Path) -> list[str]:
    path = root / "deploy/grafana/ollama-lb.json"
    errors: list[str] = []
    try:
        dash = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return [f"{path}: not JSON: {e}"]
    for key in ("title", "uid", "panels", "templating"):
        if key not in dash:
            errors.append(f"no top-level {key!r}")
    if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 36:
        errors.append("schemaVersion must be an integer >= 36 (Grafana 9+)")
    variables = [v.get("name", "") for v in dash.get("templating", {}).get("list", [])]
    ds = [v for v in dash.get("templating", {}).get("list", []) if v.get("type") == "datasource"]
    if not ds or ds[0].get("name") != "datasource" or ds[0].get("query") != "prometheus":
        errors.append("needs a 'datasource' variable of type datasource for prometheus")
    known = documented(root)
    ids: set[int] = set()
    cells: dict[tuple[int, int], int] = {}
    for p in dash.get("panels", []):
        name = f"panel {p.get('id')} {p.get('title')!r}"
        if p.get("id") in ids or not isinstance(p.get("id"), int):
            errors.append(f"{name}: id missing or not unique")
        ids.add(p.get("id"))
        if p.get("type") not in KINDS:
            errors.append(f"{name}: unknown type {p.get('type')!r}")
        g = p.get("gridPos", {})
        x, y, w, h = (g.get(k) for k in ("x", "y", "w", "h"))
        if not all(isinstance(n, int) for n in (x, y, w, h)) or x < 0 or y < 0 or w < 1 or h < 1 or x + w > 24:
            errors.append(f"{name}: gridPos {g} is outside the 24-column grid")
            continue
        taken = {cells[c] for c in cells.keys() & {(cx, cy) for cx in range(x, x + w) for cy in range(y, y + h)}}
        if taken:
            errors.append(f"{name}: overlaps panel(s) {sorted(taken)}")
        for cx in range(x, x + w):
            for cy in range(y, y + h):
                cells.setdefault((cx, cy), p["id"])
        if p["type"] == "row":
            continue
        if p.get("datasource", {}).get("uid") != DATASOURCE:
            errors.append(f"{name}: datasource is not {DATASOURCE}")
        refs = set()
        targets = p.get("targets", [])
        if not targets:
            errors.append(f"{name}: no queries")
        for t in targets:
            if t.get("refId") in refs:
                errors.append(f"{name}: refId {t.get('refId')} twice")
            refs.add(t.get("refId"))
            if t.get("datasource", {}).get("uid") != DATASOURCE:
                errors.append(f"{name} {t.get('refId')}: datasource is not {DATASOURCE}")
            expr = substitute(t.get("expr", ""), variables)
            try:
                promql_parser.parse(expr)
            except Exception as e:  # the parser raises ValueError, and others on odd input
                errors.append(f"{name} {t.get('refId')}: PromQL does not parse: {e}: {expr}")
            for metric in METRIC.findall(expr):
                base = metric
                for suffix in HISTOGRAM_SUFFIXES:
                    if metric.endswith(suffix) and metric[: -len(suffix)] in known:
                        base = metric[: -len(suffix)]
                if base not in known:
                    errors.append(f"{name}: queries {metric}, which docs/operations.md does not list")
    return errors


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    errors = check(root)
    for e in errors:
        print(f"FAIL    deploy/grafana/ollama-lb.json: {e}")
    if not errors:
        panels = json.loads((root / "deploy/grafana/ollama-lb.json").read_text())["panels"]
        queries = sum(len(p.get("targets", [])) for p in panels)
        print(f"ok      deploy/grafana/ollama-lb.json ({len(panels)} panels, {queries} queries parsed, every metric documented)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
