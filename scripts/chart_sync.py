"""Keep the Helm chart's copies in step with their sources; `--check` only reports what differs.

    .venv/bin/python scripts/chart_sync.py           # write the copies and the values table
    .venv/bin/python scripts/chart_sync.py --check   # exit 1 naming each stale file

| the chart's copy | its source |
| --- | --- |
| files/target-role.yaml | deploy/kubernetes/role.yaml (the Kubernetes target's minimal Role) |
| files/gatekeeper-rules.yaml | deploy/prometheus/gatekeeper-rules.yaml (the alerts) |
| files/dashboards/release-gatekeeper.json | deploy/grafana/release-gatekeeper.json |
| files/workflow-template.yaml | `gatekeeper workflow render --template` (the defaults) |
| README.md, between the values-table markers | values.yaml: each key's `# --` comment and default |
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "release-gatekeeper"
COPIES = {
    CHART / "files" / "target-role.yaml": REPO / "deploy" / "kubernetes" / "role.yaml",
    CHART / "files" / "gatekeeper-rules.yaml": REPO
    / "deploy"
    / "prometheus"
    / "gatekeeper-rules.yaml",
    CHART / "files" / "dashboards" / "release-gatekeeper.json": REPO
    / "deploy"
    / "grafana"
    / "release-gatekeeper.json",
}
WORKFLOW_TEMPLATE = CHART / "files" / "workflow-template.yaml"
README = CHART / "README.md"
TABLE_START = "<!-- values-table:start -->"
TABLE_END = "<!-- values-table:end -->"

_KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z_][\w.-]*):(\s|$)")


def rendered_template() -> str:
    """The WorkflowTemplate as `gatekeeper workflow render --template` prints it."""
    done = subprocess.run(
        [sys.executable, "-m", "gatekeeper.cli", "workflow", "render", "--template"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"gatekeeper workflow render --template failed: {done.stderr}")
    return done.stdout


def described_keys(text: str) -> dict[str, str]:
    """Dotted key path -> its `# --` comment (continued by the `#` lines below it)."""
    found: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = [stripped.removeprefix("# --").strip()]
            continue
        if stripped.startswith("#"):
            if pending is not None:
                pending.append(stripped.removeprefix("#").strip())
            continue
        if not stripped:
            pending = None
            continue
        match = _KEY.match(line)
        if match is None or stripped.startswith("-"):
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([k for _, k in stack] + [match["key"]])
        if pending is not None:
            found[path] = " ".join(pending)
        pending = None
        stack.append((indent, match["key"]))
    return found


def documented_leaves(values: dict[str, Any], described: set[str], prefix: str = "") -> list[str]:
    """Every key the table must list: a value that is not a mapping, an empty mapping, or a
    mapping documented as a whole (such as `resources`)."""
    keys: list[str] = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in described:
            keys += documented_leaves(value, described, f"{path}.")
        else:
            keys.append(path)
    return keys


def lookup(values: dict[str, Any], path: str) -> Any:
    found: Any = values
    for part in path.split("."):
        found = found[part]
    return found


def default_text(value: Any) -> str:
    return "`" + json.dumps(value, separators=(", ", ": ")) + "`"


def values_table(values_text: str) -> str:
    values = yaml.safe_load(values_text)
    described = described_keys(values_text)
    leaves = documented_leaves(values, set(described))
    missing = [k for k in leaves if k not in described]
    if missing:
        raise SystemExit(f"values.yaml: give these keys a `# --` comment: {', '.join(missing)}")
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    for key in leaves:
        meaning = described[key].replace("|", "\\|")
        rows.append(f"| `{key}` | {default_text(lookup(values, key))} | {meaning} |")
    return "\n".join(rows)


def readme_with_table(readme: str, table: str) -> str:
    start = readme.index(TABLE_START) + len(TABLE_START)
    end = readme.index(TABLE_END)
    return readme[:start] + "\n" + table + "\n" + readme[end:]


def wanted() -> dict[Path, str]:
    """Each file of the chart this script owns, with the text it should have."""
    files = {copy: source.read_text() for copy, source in COPIES.items()}
    files[WORKFLOW_TEMPLATE] = rendered_template()
    table = values_table((CHART / "values.yaml").read_text())
    files[README] = readme_with_table(README.read_text(), table)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale files, change none")
    args = parser.parse_args(argv)
    stale = []
    for path, text in wanted().items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        stale.append(path.relative_to(REPO))
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if args.check and stale:
        names = ", ".join(str(p) for p in stale)
        print(f"stale: {names}; run .venv/bin/python scripts/chart_sync.py", file=sys.stderr)
        return 1
    for path in stale:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
