"""The CLI prints data as given: brackets in names, reasons and messages are not rich markup."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner, Result

from gatekeeper.cli import demo_cmd, gates_cmd, release_cmd
from gatekeeper.cli.main import app
from gatekeeper.cli.progress import ReleaseProgress
from gatekeeper.domain.release import Phase
from gatekeeper.domain.verdicts import GateResult, Verdict
from gatekeeper.engine.executor import Outcome
from gatekeeper.engine.runner import RunOptions
from gatekeeper.store.factory import open_store
from tests.unit.test_store import release

# rich reads "[a-z0-9]" and "[bold]...[/bold]" as tags and drops them; "\[" tests the escape
# of an escape.
TRICKY = r"saw [a-z0-9] and [bold]5%[/bold] at C:\[tmp]"
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def invoke(*args: str) -> Result:
    # wide enough that no table folds a cell in two
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})


def backtest(start: str, end: str) -> Result:
    return invoke(
        *("gates", "backtest", "--prometheus", "http://127.0.0.1:1"),
        *("--app", "shop", "--version", "v2", "--start", start, "--end", end),
    )


def write_spec(tmp_path: Path, **overrides: Any) -> Path:
    spec: dict[str, Any] = {
        "app": "shop",
        "version": "v2",
        "command": "serve --port {port}",
        "stable": {"version": "v1", "command": "serve --port {port}"},
        "strategy": {"type": "canary", "steps": [50, 100]},
    }
    spec.update(overrides)
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_an_app_name_with_capitals_is_refused_in_words_naming_the_file_and_field(
    tmp_path: Path,
) -> None:
    path = write_spec(tmp_path, app="Shop!")
    out = invoke("plan", str(path))
    assert out.exit_code == 2, out.output
    assert (
        f"invalid input: {path}: app: 'Shop!' is not a lower-case DNS label: a-z, 0-9 and '-', "
        "at most 63 characters, starting and ending with a letter or digit"
    ) in out.stderr
    assert "should match pattern" not in out.stderr


def test_a_refusal_keeps_the_brackets_of_the_path_it_names(tmp_path: Path) -> None:
    missing = tmp_path / "[bold]release[a-z0-9].yaml"
    out = invoke("plan", str(missing))
    assert out.exit_code == 2, out.output
    assert f"invalid input: release file {missing}: No such file" in out.stderr


def test_backtest_refuses_a_time_with_brackets_word_for_word() -> None:
    out = backtest("[bold]yesterday", "now")
    assert out.exit_code == 2, out.output
    assert "--start '[bold]yesterday' is not a time" in out.stderr


def test_plan_table_prints_a_smoke_path_with_brackets_literally(tmp_path: Path) -> None:
    smoke_path = "/[bold]health[a-z0-9]"
    path = write_spec(tmp_path, strategy={"type": "blue-green", "smoke": [{"path": smoke_path}]})
    out = invoke("plan", str(path))
    assert out.exit_code == 0, out.output
    assert f"smoke checks on the preview route: {smoke_path} -> 200" in out.stdout


def test_run_prints_reasons_and_events_with_brackets_literally(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_run(spec: Any, options: RunOptions, base_dir: Path | None = None) -> Outcome:
        assert options.listener is not None
        options.listener.event("gate", f"event {TRICKY}")
        options.listener.gates([GateResult("errors", Verdict.FAIL, f"gate {TRICKY}", T0)])
        return Outcome(spec.release_id, Phase.ROLLED_BACK, f"outcome {TRICKY}")

    monkeypatch.setattr(release_cmd, "run_release", fake_run)
    out = invoke("run", str(write_spec(tmp_path)))
    assert out.exit_code == 3, out.output
    assert f"rolled_back: outcome {TRICKY}" in out.stdout
    assert f"[shop v2] gate: event {TRICKY}" in out.stderr
    assert f"[shop v2] gate fail: gate {TRICKY}" in out.stderr


def test_history_prints_a_reason_with_brackets_literally(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gatekeeper.db'}"
    store = open_store(url)
    try:
        store.create_release(release("v2", phase=Phase.RUNNING, at=T0))
        store.set_phase("shop-production-v2", Phase.ROLLED_BACK, TRICKY)
    finally:
        store.close()
    out = invoke("history", "--db", url)
    assert out.exit_code == 0, out.output
    assert TRICKY in out.stdout


@dataclass
class _Backtest:
    """What the backtest command reads of run_backtest's result."""

    timeline: list[dict[str, Any]]
    decision: Verdict = Verdict.FAIL
    decided_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {"timeline": self.timeline}


def test_backtest_table_prints_gate_names_and_reasons_with_brackets_literally(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    row = {
        "time": "2026-11-20T12:00:00Z",
        "gate": "errors",
        "value": 0.5,
        "verdict": "fail",
        "reason": TRICKY,
    }
    monkeypatch.setattr(gates_cmd, "run_backtest", lambda **_: _Backtest([row]))
    out = backtest("2026-11-20T12:00:00Z", "2026-11-20T13:00:00Z")
    assert out.exit_code == 0, out.output
    assert TRICKY in out.stdout


@dataclass
class _DemoRun:
    name: str
    outcome: Outcome
    expected: Phase
    seconds: float = 1.0
    as_expected: bool = True


@dataclass
class _Demo:
    runs: list[_DemoRun] = field(default_factory=list)
    metrics: str = "scraper [a-z0-9]"
    ok: bool = True


def test_demo_summary_prints_reasons_with_brackets_literally(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = _DemoRun("good", Outcome("shop-demo-v2", Phase.PROMOTED, TRICKY), Phase.PROMOTED)
    monkeypatch.setattr(demo_cmd, "run_demo", lambda **_: _Demo([run]))
    out = invoke("demo")
    assert out.exit_code == 0, out.output
    assert TRICKY in out.stdout
    assert "(metrics: scraper [a-z0-9])" in out.stdout


@pytest.mark.parametrize("plain", [True, False], ids=["plain-lines", "live-panel"])
def test_progress_shows_gate_names_reasons_and_events_with_brackets_literally(
    plain: bool,
) -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=400, record=True)
    with ReleaseProgress("shop [bold]v2", console, plain=plain) as progress:
        progress.event("gate", f"event {TRICKY}")
        progress.gates([GateResult("errors[a-z0-9]", Verdict.FAIL, f"gate {TRICKY}", T0)])
    shown = console.export_text()
    assert f"event {TRICKY}" in shown
    assert f"gate {TRICKY}" in shown
    assert "shop [bold]v2" in shown
    if not plain:  # plain lines name the gate by its reason; the panel has a gate column
        assert "errors[a-z0-9]" in shown
