"""The CLI as a client of `gatekeeper serve`: submit (--wait exits like `run`), status,
and `remote` history, approve, reject, abort, retry, rollback and whoami."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from gatekeeper.cli.main import app
from gatekeeper.domain.release import Phase, ReleaseSpec
from gatekeeper.engine.executor import Outcome
from gatekeeper.engine.runner import RunOptions
from tests.support.service import FakeRun, Harness, database, local_spec, serving


class EndingRun:
    """Ends every release in the phase its version names (v2: promoted, v3: rolled back)."""

    ENDS = {"v2": Phase.PROMOTED, "v3": Phase.ROLLED_BACK, "v4": Phase.ABORTED}

    def __call__(self, spec: ReleaseSpec, options: RunOptions) -> Outcome:
        phase = self.ENDS[spec.version]
        if phase is Phase.PROMOTED:
            return FakeRun()(spec, options)
        assert options.store is not None
        options.store.set_phase(spec.release_id, Phase.RUNNING, "running")
        options.store.set_phase(spec.release_id, phase, f"{phase.value} on purpose")
        return Outcome(spec.release_id, phase, f"{phase.value} on purpose")


@pytest.fixture
def gk(tmp_path: Path) -> Iterator[Harness]:
    with database("sqlite", tmp_path) as url, serving(url, run=EndingRun()) as harness:
        harness.service.controller.interval_s = 0.1
        harness.service.controller.start()
        yield harness


def cli(gk: Harness, *args: str, who: str | None = "ci-bot", **env: str) -> Any:
    environ = {"GATEKEEPER_SERVER": gk.url, **env}
    if who is not None:
        environ["GATEKEEPER_TOKEN"] = gk.tokens[who]
    return CliRunner().invoke(app, list(args), env=environ)


def spec_file(tmp_path: Path, version: str, **extra: Any) -> Path:
    path = tmp_path / f"{version}.yaml"
    path.write_text(yaml.safe_dump(local_spec(version, **extra)))
    return path


@pytest.mark.parametrize(("version", "code", "phase"), [
    ("v2", 0, "promoted"), ("v3", 3, "rolled_back"), ("v4", 4, "aborted"),
])  # fmt: skip
def test_submit_wait_exits_like_run(gk: Harness, tmp_path: Path, version, code, phase):
    done = cli(gk, "submit", str(spec_file(tmp_path, version)), "--wait", "--interval", "0.1",
               "--json")  # fmt: skip
    assert done.exit_code == code, done.output
    summary = json.loads(done.stdout)
    assert (summary["phase"], summary["exit_code"]) == (phase, code)
    watched = cli(gk, "status", summary["release_id"], "--watch", "--interval", "0.1")
    assert watched.exit_code == code, watched.output


def test_submit_without_wait_prints_the_release_id(gk: Harness, tmp_path: Path):
    done = cli(gk, "submit", str(spec_file(tmp_path, "v2")), "--idempotency-key", "pipeline-7")
    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == "shop-production-v2"
    again = cli(gk, "submit", str(spec_file(tmp_path, "v2")), "--idempotency-key", "pipeline-7")
    assert again.exit_code == 0 and "submitted before" in again.stderr


def test_submit_puts_a_gates_file_into_the_spec(gk: Harness, tmp_path: Path):
    (tmp_path / "gates.yaml").write_text(
        yaml.safe_dump(
            {
                "gates": [
                    {
                        "name": "abort",
                        "metric": "error_ratio",
                        "threshold": 0.05,
                        "window": "2m",
                        "guard": True,
                    }
                ]
            }
        )  # fmt: skip
    )
    done = cli(gk, "submit", str(spec_file(tmp_path, "v2", gates="gates.yaml")), "--json")
    assert done.exit_code == 0, done.output
    stored = gk.call("GET", "/api/v1/releases/shop-production-v2", "vera").json()["spec"]
    assert [g["name"] for g in stored["gates"]["gates"]] == ["abort"]


def test_a_refused_submit_exits_2_with_the_servers_reason(gk: Harness, tmp_path: Path):
    denied = cli(gk, "submit", str(spec_file(tmp_path, "v2")), who="vera")
    assert denied.exit_code == 2
    assert "403: vera may not submit: needs role ci; has viewer" in denied.stderr
    anonymous = cli(gk, "submit", str(spec_file(tmp_path, "v2")), who=None)
    assert anonymous.exit_code == 2 and "401: no credentials" in anonymous.stderr
    invalid = cli(gk, "submit", str(spec_file(tmp_path, "v2", strategy={"type": "canery"})))
    assert invalid.exit_code == 2 and "canery" in invalid.stderr


def test_the_token_may_come_from_a_file(gk: Harness, tmp_path: Path):
    token = tmp_path / "token"
    token.write_text(gk.tokens["rita"] + "\n")
    done = cli(gk, "remote", "whoami", "--token-file", str(token), who=None)
    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == "rita (release-manager) via token"


def test_a_server_that_does_not_answer_is_an_error_exit_1(tmp_path: Path):
    environ = {"GATEKEEPER_SERVER": "http://127.0.0.1:9", "GATEKEEPER_TOKEN": "gkt_x"}
    done = CliRunner().invoke(app, ["remote", "whoami"], env=environ)
    assert done.exit_code == 1
    assert "http://127.0.0.1:9: ConnectError" in done.stderr


def test_remote_actions_and_status(gk: Harness, tmp_path: Path):
    gk.service.controller.stop()  # nothing starts: the releases stay queued
    rid = gk.submit(local_spec("v2", approvals=["promote"]))["release_id"]
    approved = cli(gk, "remote", "approve", rid, "approve-promote", "--comment", "ok", who="rita")
    assert approved.exit_code == 0, approved.output
    status = cli(gk, "status", rid, "--json", who="vera")
    assert [a["approver"] for a in json.loads(status.stdout)["approvals"]] == ["rita"]
    shown = cli(gk, "status", rid, who="vera")
    assert shown.exit_code == 0 and "approve-promote" in shown.stdout
    own = cli(gk, "remote", "approve", rid, "approve-promote", who="ci-bot")
    assert own.exit_code == 2 and "403" in own.stderr
    gk.service.store.set_stalled(rid, "GatekeeperError: boom")
    assert cli(gk, "remote", "retry", rid, who="rita").exit_code == 0
    aborted = cli(gk, "remote", "abort", rid, "--reason", "freeze", who="rita")
    assert aborted.exit_code == 0 and "aborted by rita: freeze" in aborted.stdout
    other = gk.submit(local_spec("v3", approvals=["promote"]))["release_id"]
    rejected = cli(gk, "remote", "reject", other, "approve-promote", who="rita")
    assert rejected.exit_code == 0 and "rejected by rita" in rejected.stdout
    history = cli(gk, "remote", "history", "--json", who="vera")
    assert {r["release_id"]: r["phase"] for r in json.loads(history.stdout)} == {
        rid: "aborted", other: "aborted",
    }  # fmt: skip
    rollback = cli(gk, "remote", "rollback", rid, who="rita")
    assert rollback.exit_code == 2 and "not promoted" in rollback.stderr
