"""The CLI loads what a command needs when it runs: the heavy libraries stay out of its start.

Each check runs a fresh interpreter, since this test process has imported everything.
No timings here: bench/cli_start.py measures the start.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from gatekeeper.domain.release import Phase
from gatekeeper.store.factory import open_store
from tests.unit.test_store import release

REPO = Path(__file__).resolve().parents[2]

# The store (SQLAlchemy, Alembic), the Prometheus query client, HTTP and the executor.
HEAVY = ("sqlalchemy", "alembic", "prometheus_api_client", "httpx", "gatekeeper.engine.executor")
# Not needed before a command reads a spec or a release: pydantic and the domain's models.
MODELS = ("pydantic", "gatekeeper.domain.release")

# The commands of the README's interface; `gates` holds `backtest`, `step` holds `run`.
COMMANDS = ("demo", "plan", "run", "approve", "abort", "history", "gates", "step")

# Runs the CLI with the given arguments (or only imports it, without any), then prints
# the loaded modules as the last line.
PROBE = """
import json, sys
from gatekeeper.cli.main import app
status = None
if sys.argv[1:]:
    try:
        app(sys.argv[1:])
    except SystemExit as e:
        status = e.code
print()
print(json.dumps({"status": status, "modules": sorted(sys.modules)}))
"""


def probe(*args: str) -> tuple[int | None, set[str], str]:
    """Exit status, loaded modules and output of the CLI run in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    output, _, last = done.stdout.rstrip("\n").rpartition("\n")
    result = json.loads(last)
    return result["status"], set(result["modules"]), output


def loaded(modules: set[str], *packages: str) -> list[str]:
    """The modules of ``packages`` among ``modules``."""
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in packages))


def test_importing_the_cli_loads_no_store_prometheus_client_http_executor_or_models() -> None:
    _, modules, _ = probe()
    assert "gatekeeper.cli.main" in modules
    assert loaded(modules, *HEAVY, *MODELS) == []


def test_help_lists_every_command() -> None:
    status, modules, output = probe("--help")
    assert status == 0
    for name in COMMANDS:
        assert re.search(rf"^\W*{name}\s{{2,}}\w", output, re.MULTILINE), (name, output)
    assert loaded(modules, *HEAVY, *MODELS) == []


def test_gates_help_lists_backtest_without_loading_the_prometheus_client() -> None:
    status, modules, output = probe("gates", "--help")
    assert status == 0
    assert re.search(r"^\W*backtest\s{2,}Evaluate the gates", output, re.MULTILINE), output
    assert loaded(modules, "prometheus_api_client", "gates.prometheus") == []


def test_plan_needs_neither_the_store_nor_the_prometheus_client() -> None:
    status, modules, output = probe("plan", "examples/canary.yaml")
    assert status == 0, output
    assert "shift-5" in output
    assert loaded(modules, "sqlalchemy", "alembic", "prometheus_api_client") == []


def test_history_of_a_store_at_the_head_of_the_migrations_loads_neither_sqlalchemy_nor_alembic(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'gatekeeper.db'}"
    at = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    store = open_store(url)  # creates the schema: migrates to head
    try:
        store.create_release(release("v2", phase=Phase.PROMOTED, at=at))
    finally:
        store.close()
    status, modules, output = probe("history", "--db", url)
    assert status == 0, output
    assert "shop-production-v2" in output
    # A SQLite store at the head is read with the standard library's sqlite3.
    assert loaded(modules, "sqlalchemy", "alembic", "prometheus_api_client", "httpx") == []
