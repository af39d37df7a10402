"""Backtests against a real Prometheus holding backfilled history."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta

import pytest

from gatekeeper.domain.verdicts import Decision
from gatekeeper.engine.gating import run_backtest
from tests.support.prom import LocalPrometheus as PrometheusServer

pytestmark = pytest.mark.integration


def _run(server: PrometheusServer, start: datetime, app: str, minutes: int = 25):
    return run_backtest(
        prometheus_url=server.url,
        app=app,
        version="v2",
        namespace="default",
        baseline_version=None,
        gates_file=None,
        start=start,
        end=start + timedelta(minutes=minutes),
        step=timedelta(seconds=30),
    )


def test_healthy_release_is_promoted_and_4xx_do_not_count(history_prometheus, history_start):
    result = _run(history_prometheus, history_start, "healthy")
    assert result.decision is Decision.PROMOTE
    assert result.decided_at == history_start + timedelta(minutes=25)


def test_half_4xx_is_still_healthy(history_prometheus, history_start):
    assert _run(history_prometheus, history_start, "clienterrors").decision is Decision.PROMOTE


def test_six_percent_errors_roll_back_within_minutes(history_prometheus, history_start):
    result = _run(history_prometheus, history_start, "errors6")
    assert result.decision is Decision.ROLLBACK
    assert result.decided_at is not None
    assert result.decided_at - history_start <= timedelta(minutes=3)
    first_fail = next(r for r in result.timeline if r.verdict.value == "fail")
    assert first_fail.gate == "abort"
    assert "> 5%" in first_fail.reason


def test_three_percent_rolls_back_only_after_fifteen_minutes(history_prometheus, history_start):
    result = _run(history_prometheus, history_start, "errors3")
    assert result.decision is Decision.ROLLBACK
    assert result.decided_at is not None
    held = result.decided_at - history_start
    assert timedelta(minutes=15) <= held <= timedelta(minutes=17), held
    before = [r for r in result.timeline if r.at < result.decided_at and r.gate == "sustained"]
    assert before and all(r.verdict.value in ("warn", "inconclusive") for r in before)
    assert any(r.verdict.value == "warn" for r in before)
    assert not any(r.verdict.value == "fail" for r in result.timeline if r.gate == "abort")


def test_short_spike_then_healthy_is_promoted(history_prometheus, history_start):
    result = _run(history_prometheus, history_start, "spike3")
    assert result.decision is Decision.PROMOTE
    warns = [r for r in result.timeline if r.gate == "sustained" and r.verdict.value == "warn"]
    assert warns, "a 3% spike must warn while it lasts"


def test_too_little_traffic_holds(history_prometheus, history_start):
    result = _run(history_prometheus, history_start, "lowtraffic")
    assert result.decision is Decision.HOLD
    assert result.decided_at is None
    rules = [r for r in result.timeline if r.gate in ("abort", "sustained", "latency")]
    assert all(r.verdict.value == "inconclusive" for r in rules)
    assert "too little traffic" in rules[-1].reason
    # Without weights or process metrics the resource gates have nothing to judge.
    others = [r for r in result.timeline if r not in rules]
    assert {r.verdict.value for r in others} <= {"not_applicable", "inconclusive"}


def test_no_traffic_at_all_holds(history_prometheus, history_start):
    result = _run(history_prometheus, history_start, "nosuchapp")
    assert result.decision is Decision.HOLD
    rules = [r for r in result.timeline if r.gate in ("abort", "sustained", "latency")]
    assert rules and all("no data" in r.reason for r in rules)


def test_p95_at_650ms_rolls_back(history_prometheus, history_start):
    result = _run(history_prometheus, history_start, "slow")
    assert result.decision is Decision.ROLLBACK
    first_fail = next(r for r in result.timeline if r.verdict.value == "fail")
    assert first_fail.gate == "latency"
    assert first_fail.value is not None and first_fail.value > 0.5


def test_cli_prints_the_json_contract(history_prometheus, history_start):
    start = history_start
    end = start + timedelta(minutes=5)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gatekeeper.cli",
            "gates",
            "backtest",
            "--prometheus",
            history_prometheus.url,
            "--app",
            "errors6",
            "--version",
            "v2",
            "--start",
            start.isoformat().replace("+00:00", "Z"),
            "--end",
            end.isoformat().replace("+00:00", "Z"),
            "--step",
            "30s",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    doc = json.loads(out.stdout)
    assert doc["decision"] == "rollback"
    assert doc["decided_at"].endswith("Z")
    row = doc["timeline"][0]
    assert set(row) == {"time", "gate", "value", "verdict", "reason"}
    assert {r["gate"] for r in doc["timeline"]} == {
        "abort",
        "sustained",
        "latency",
        "traffic",
        "cpu",
        "memory",
        "db-pool",
    }


def test_cli_rejects_a_bad_time_with_exit_2(history_prometheus):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gatekeeper.cli",
            "gates",
            "backtest",
            "--prometheus",
            history_prometheus.url,
            "--app",
            "a",
            "--version",
            "v",
            "--start",
            "yesterday",
            "--end",
            "now",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "--start" in out.stderr and "yesterday" in out.stderr


def test_cli_exits_1_when_prometheus_does_not_answer(history_start):
    from tests.support.prom import free_port

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gatekeeper.cli",
            "gates",
            "backtest",
            "--prometheus",
            f"http://127.0.0.1:{free_port()}",
            "--app",
            "a",
            "--version",
            "v",
            "--start",
            "now-1h",
            "--end",
            "now",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert "does not answer" in out.stderr
    assert out.stdout == ""
