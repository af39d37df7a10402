"""`gatekeeper run`, `plan` and `demo` as a user runs them: exit codes and summaries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gatekeeper.engine.demo import service_command
from gatekeeper.targets.local.loadgen import LoadGenerator
from gatekeeper.targets.local.target import LocalProcessTarget
from tests.support.prom import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def gatekeeper(*args: str, home: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GATEKEEPER_HOME": str(home)}
    env.pop("GATEKEEPER_PROMETHEUS_URL", None)
    env.pop("GATEKEEPER_DB_URL", None)
    env["KUBECONFIG"] = str(home / "no-kubeconfig")  # a kubernetes target finds no cluster
    return subprocess.run(
        [sys.executable, "-m", "gatekeeper.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )


def write_spec(tmp: Path, router_port: int, **overrides: Any) -> Path:
    spec: dict[str, Any] = {
        "app": "shop",
        "environment": "cli",
        "version": "v2",
        "command": service_command("v2", "--latency-ms", "5"),
        "stable": {"version": "v1", "command": service_command("v1", "--latency-ms", "5")},
        "strategy": {"type": "canary", "steps": [50, 100], "analysis": "3m"},
        "target": {"type": "local", "router_port": router_port, "state_dir": str(tmp / "target")},
        "time_scale": 30,
    }
    spec.update(overrides)
    path = tmp / "release.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture
def router_port(tmp_path: Path):
    port = free_port()
    yield port
    LocalProcessTarget("shop", tmp_path / "target", router_port=port).shutdown()


def test_run_promotes_with_the_built_in_scraper_and_exits_0(tmp_path: Path, router_port: int):
    path = write_spec(tmp_path, router_port)
    with LoadGenerator(f"http://127.0.0.1:{router_port}/", rps=150, duration=120):
        out = gatekeeper("run", str(path), "--json", home=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert summary["outcome"] == "promoted"
    assert summary["exit_code"] == 0
    assert summary["release"] == "shop-cli-v2"
    history = gatekeeper("history", "--json", home=tmp_path)
    assert json.loads(history.stdout)[0]["phase"] == "promoted"


def test_run_without_traffic_holds_then_stops_with_exit_4(tmp_path: Path, router_port: int):
    path = write_spec(tmp_path, router_port, hold_timeout="5m")  # 10s at time_scale 30
    out = gatekeeper("run", str(path), "--json", home=tmp_path)
    assert out.returncode == 4, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert summary["outcome"] == "aborted"
    assert "hold_timeout" in summary["reason"]
    assert "too little traffic" in summary["reason"] or "no data" in summary["reason"]


def test_run_rolls_back_with_exit_3_when_the_candidate_cannot_start(
    tmp_path: Path, router_port: int
):
    path = write_spec(
        tmp_path,
        router_port,
        command=f"{sys.executable} -c 'import sys; sys.exit(7)' {{port}}",
    )
    out = gatekeeper("run", str(path), "--json", home=tmp_path)
    assert out.returncode == 3, out.stderr[-3000:]
    assert json.loads(out.stdout)["outcome"] == "rolled_back"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"bogus": 1}, "bogus: is not a known field"),
        ({"strategy": {"type": "canery"}}, "'canary', 'blue-green', 'rolling'"),
        ({"strategy": {"type": "canary", "steps": [50, 25]}}, "must strictly increase"),
        ({"gates": {"gates": [{"name": "g", "metric": "error_ratio"}]}}, "needs threshold"),
        ({"approvals": ["nope"]}, "nope"),
        ({"expedited": True}, "expedited_reason"),
        ({"time_scale": 200}, "shorter than two scrape intervals"),
        (
            {
                "target": {"type": "kubernetes"},
                "image": "shop:v2",
                "stable": {"version": "v1", "image": "shop:v1"},
            },
            "no-kubeconfig: no such file",
        ),
    ],
    ids=[
        "unknown-field",
        "unknown-strategy",
        "weights-decrease",
        "gate-without-threshold",
        "unknown-approval-step",
        "expedited-without-reason",
        "window-under-two-scrapes",
        "kubernetes-target",
    ],
)
def test_invalid_input_exits_2_and_starts_nothing(
    tmp_path: Path, router_port: int, overrides: dict[str, Any], message: str
):
    path = write_spec(tmp_path, router_port, **overrides)
    out = gatekeeper("run", str(path), home=tmp_path, timeout=60)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert not (tmp_path / "target").exists()
    assert not (tmp_path / "gatekeeper.db").exists()


def test_plan_prints_a_table_and_json(tmp_path: Path):
    out = gatekeeper("plan", str(REPO / "examples" / "canary.yaml"), "--json", home=tmp_path)
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert [s["name"] for s in plan["steps"]][:3] == ["deploy", "verify", "shift-5"]
    table = gatekeeper("plan", str(REPO / "examples" / "hotfix.yaml"), home=tmp_path)
    assert "approve-expedited" in table.stdout and "engineering-lead" in table.stdout


def test_demo_promotes_the_good_release_and_rolls_back_the_bad_one(tmp_path: Path):
    out = gatekeeper("demo", "--json", home=tmp_path, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert summary["ok"] is True
    outcomes = {r["name"]: (r["outcome"], r["reason"]) for r in summary["releases"]}
    assert outcomes["good release"][0] == "promoted"
    assert outcomes["bad release"][0] == "rolled_back"
    assert outcomes["bad release"][1].startswith("abort: error ratio")
    assert all(r["seconds"] < 150 for r in summary["releases"])


def test_a_killed_run_resumes_where_it_stopped_without_repeating_a_shift(
    tmp_path: Path, router_port: int
):
    import signal
    import time

    from gatekeeper.store.sql import SqlStore

    path = write_spec(
        tmp_path,
        router_port,
        strategy={"type": "canary", "steps": [25, 50, 100], "analysis": "5m"},
    )
    env = {**os.environ, "GATEKEEPER_HOME": str(tmp_path)}
    db = f"sqlite:///{tmp_path / 'gatekeeper.db'}"
    with LoadGenerator(f"http://127.0.0.1:{router_port}/", rps=150, duration=150):
        # Given a release killed (SIGKILL) after its shift to 50%
        first = subprocess.Popen(
            [sys.executable, "-m", "gatekeeper.cli", "run", str(path)],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        killed_at = None
        while time.monotonic() < deadline and first.poll() is None:
            if (tmp_path / "gatekeeper.db").exists():
                store = SqlStore.open(db)
                try:
                    record = store.get_release("shop-cli-v2")
                finally:
                    store.close()
                if record is not None and record.next_step >= 5:  # shift-50 done
                    first.send_signal(signal.SIGKILL)
                    first.wait()
                    killed_at = record.next_step
                    break
            time.sleep(0.2)
        assert killed_at is not None, "the release never reached its 50% step"
        weight_before = LocalProcessTarget("shop", tmp_path / "target").state().candidate_weight
        assert weight_before == 50

        # When it is run again
        out = gatekeeper("run", str(path), "--json", home=tmp_path)

    # Then it resumed there, was promoted, and shifted traffic to each weight once
    assert out.returncode == 0, out.stderr[-3000:]
    store = SqlStore.open(db)
    try:
        events = store.events("shop-cli-v2")
    finally:
        store.close()
    assert any(e.kind == "resumed" for e in events)
    shifts = [e.message for e in events if e.kind == "shift" and "->" in e.message]
    assert shifts == [
        "traffic: candidate 0% -> 25%",
        "traffic: candidate 25% -> 50%",
        "traffic: candidate 50% -> 100%",
    ], shifts


def test_approve_refuses_a_role_the_step_does_not_take_and_abort_frees_the_app(
    tmp_path: Path, router_port: int
):
    path = write_spec(tmp_path, router_port, approvals=["shift-50"], hold_timeout="5m")
    refused = gatekeeper("run", str(path), "--approve", "developer:dana", home=tmp_path)
    assert refused.returncode == 2
    assert "no step of this plan waits for a developer" in refused.stderr

    # A release that waits for its approval in another process...
    env = {**os.environ, "GATEKEEPER_HOME": str(tmp_path)}
    running = subprocess.Popen(
        [sys.executable, "-m", "gatekeeper.cli", "run", str(path)],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import time

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            h = gatekeeper("history", "--json", home=tmp_path)
            rows = json.loads(h.stdout) if h.returncode == 0 and h.stdout.strip() else []
            if rows and rows[0]["phase"] == "holding":
                break
            time.sleep(0.5)
        wrong = gatekeeper(
            "approve",
            "shop-cli-v2",
            "approve-shift-50",
            "--by",
            "dana",
            "--role",
            "developer",
            home=tmp_path,
        )
        assert wrong.returncode == 2
        assert "does not count" in wrong.stderr
        # ...is stopped by an abort: traffic back to stable, and the run exits 4.
        stop = gatekeeper(
            "abort", "shop-cli-v2", "--by", "rm", "--reason", "wrong day", home=tmp_path
        )
        assert stop.returncode == 0, stop.stderr
        assert running.wait(timeout=60) == 4
    finally:
        if running.poll() is None:
            running.kill()
    state = LocalProcessTarget("shop", tmp_path / "target").state()
    assert state.candidate_weight == 0
    rows = json.loads(gatekeeper("history", "--json", home=tmp_path).stdout)
    assert rows[0]["phase"] == "aborted"
    assert rows[0]["reason"] == "aborted by rm: wrong day"
