"""Whole releases through `gatekeeper serve` processes on the local target: `submit --wait`
exits like `gatekeeper run`, and when the leader is killed mid-release another replica
takes over and finishes it without repeating a step."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from gatekeeper.targets.local.loadgen import LoadGenerator
from gatekeeper.targets.local.target import LocalProcessTarget
from tests.integration.serve_fixture import (
    REPO,
    Tokens,
    cli_env,
    release_spec,
    running_serve,
    wait_for,
    write_config,
    write_tokens,
)
from tests.support.prom import free_port
from tests.support.service import BACKENDS, database

pytestmark = pytest.mark.integration


@dataclass
class Bed:
    base: Path
    db_url: str
    tokens: Tokens
    router_port: int
    state_dir: Path
    load: LoadGenerator

    def spec_file(self, version: str, *flags: str, **extra: object) -> Path:
        path = self.base / f"{version}.yaml"
        spec = release_spec(version, self.router_port, self.state_dir, *flags, **extra)
        path.write_text(yaml.safe_dump(spec))
        return path


@pytest.fixture(params=BACKENDS)
def bed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Bed]:
    state_dir = tmp_path / "target"
    state_dir.mkdir()
    router_port = free_port()
    tokens = write_tokens(tmp_path / "tokens", {"ci-bot": "ci", "rita": "release-manager"})
    load = LoadGenerator(f"http://127.0.0.1:{router_port}/", rps=200, duration=600)
    load.start()
    try:
        with database(request.param, tmp_path) as url:
            yield Bed(tmp_path, url, tokens, router_port, state_dir, load)
    finally:
        load.stop()
        target = LocalProcessTarget("shop", state_dir, router_port=router_port)
        target.shutdown()
        target.close()


def submit_wait(bed: Bed, url: str, spec: Path) -> subprocess.CompletedProcess[str]:
    token_file = bed.base / "ci.token"
    token_file.write_text(bed.tokens.by_name["ci-bot"] + "\n")
    return subprocess.run(
        [sys.executable, "-m", "gatekeeper.cli", "submit", str(spec), "--server", url,
         "--token-file", str(token_file), "--wait", "--interval", "0.5", "--json"],
        capture_output=True, text=True, timeout=300, cwd=REPO, env=cli_env(bed.base / "cli"),
    )  # fmt: skip


def test_submit_wait_exits_0_when_promoted_and_3_when_rolled_back(bed: Bed):
    config = write_config(bed.base / "gk.yaml", bed.db_url, bed.tokens)
    with running_serve(config, bed.base / "serve.log", bed.base / "home") as gk:
        good = submit_wait(bed, gk.url, bed.spec_file("v2"))
        assert good.returncode == 0, good.stderr + gk.log.read_text()[-3000:]
        assert '"phase": "promoted"' in good.stdout
        bad = submit_wait(bed, gk.url, bed.spec_file("v3", "--error-rate", "0.5"))
        assert bad.returncode == 3, bad.stderr + gk.log.read_text()[-3000:]
        assert '"phase": "rolled_back"' in bad.stdout and "abort: error ratio" in bad.stdout
        again = submit_wait(bed, gk.url, bed.spec_file("v2"))  # the same spec: its outcome
        assert again.returncode == 0 and "submitted before" in again.stderr
        metrics = gk.get("/metrics").text
    assert 'gatekeeper_releases_total{app="shop",environment="test",outcome="promoted"} 1.0' in (
        metrics
    )
    assert 'gatekeeper_rollbacks_total{app="shop",environment="test",reason_kind="gate"} 1.0' in (
        metrics
    )


def test_a_killed_leader_is_replaced_and_the_release_finishes_without_repeating_a_step(bed: Bed):
    spec = bed.spec_file(
        "v2", strategy={"type": "canary", "steps": [25, 50, 100], "analysis": "5m"}
    )
    rita = bed.tokens.by_name["rita"]
    config = write_config(bed.base / "gk.yaml", bed.db_url, bed.tokens)
    with running_serve(config, bed.base / "a.log", bed.base / "home-a") as first:
        wait_for("the first replica leads", first.leads, timeout=20)
        with running_serve(config, bed.base / "b.log", bed.base / "home-b") as second:
            assert not second.leads()
            submitted = subprocess.run(
                [sys.executable, "-m", "gatekeeper.cli", "submit", str(spec), "--server",
                 second.url, "--json"],
                capture_output=True, text=True, timeout=60, cwd=REPO,
                env=cli_env(bed.base / "cli", GATEKEEPER_TOKEN=bed.tokens.by_name["ci-bot"]),
            )  # fmt: skip
            assert submitted.returncode == 0, submitted.stderr
            rid = "shop-test-v2"

            def release() -> dict[str, object]:
                found: dict[str, object] = second.get(f"/api/v1/releases/{rid}", rita).json()
                return found

            # Past the first shift and into the analysis after it: traffic on the candidate.
            wait_for("three steps done", lambda: int(release()["next_step"]) >= 4)  # type: ignore[call-overload]
            done_at_kill = int(release()["next_step"])  # type: ignore[call-overload]
            first.crash()
            wait_for("the second replica leads", second.leads, timeout=20)
            final = wait_for(
                "the release ends", lambda: (r := release())["final"] and r, timeout=180
            )
            entries = second.get(f"/api/v1/audit?release={rid}&limit=1000", rita).json()["entries"]
    assert final["phase"] == "promoted", final["reason"]
    steps = final["steps"]
    assert all(s["status"] == "done" and s["completed_at"] for s in steps)
    started = [e["message"].split(":")[0] for e in final["events"] if e["kind"] == "step-started"]
    names = [s["name"] for s in steps]
    # Steps done before the crash started once; the one in progress at most twice.
    assert started[:done_at_kill] == names[:done_at_kill]
    assert sorted(set(started)) == sorted(names)
    assert len(started) - len(names) <= 1, started
    assert [e["kind"] for e in final["events"]].count("resumed") == 1
    epochs = {e["detail"].get("epoch") for e in entries if e["actor"] == "gatekeeper"}
    assert epochs == {1, 2}
    outcome = [e["detail"] for e in entries if e["action"] == "outcome"]
    assert [d["epoch"] for d in outcome] == [2]
