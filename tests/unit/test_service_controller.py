"""The controller of `gatekeeper serve`: the queue per app and environment, deploy windows
with an injected clock, expedited hotfixes, stalls and retries. Runs are faked in the store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.domain.errors import GatekeeperError
from gatekeeper.domain.release import ReleaseSpec
from gatekeeper.engine.executor import Outcome
from gatekeeper.engine.runner import RunOptions
from tests.support.fakes import FakeClock
from tests.support.service import BACKENDS, FakeRun, Harness, database, local_spec, serving

SATURDAY = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)  # 13:00 in Berlin
MONDAY_9 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)  # 09:00 in Berlin
POLICY = {
    "environments": {
        "production": {
            "timezone": "Europe/Berlin",
            "windows": [{"days": "Mon-Fri", "start": "09:00", "end": "17:00"}],
        }
    }
}


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path) as url:
        yield url


def phase(gk: Harness, rid: str) -> str:
    r = gk.call("GET", f"/api/v1/releases/{rid}", "vera")
    assert r.status_code == 200, r.text
    return str(r.json()["phase"])


def wait_phase(gk: Harness, rid: str, wanted: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while (now := phase(gk, rid)) != wanted:
        assert time.monotonic() < deadline, f"{rid} is {now}, not {wanted}"
        time.sleep(0.05)


def reason(gk: Harness, rid: str) -> str:
    return str(gk.call("GET", f"/api/v1/releases/{rid}", "vera").json()["reason"])


def decisions(gk: Harness, rid: str) -> list[dict[str, Any]]:
    entries = gk.call("GET", f"/api/v1/audit?release={rid}", "ada").json()["entries"]
    return [e["detail"] for e in entries if e["action"] == "policy-decision"]


def test_the_leader_starts_a_queued_release_and_drives_it_to_its_end(db_url: str):
    with serving(db_url) as gk:
        rid = gk.submit(local_spec())["release_id"]
        gk.lead()
        gk.tick()
        wait_phase(gk, rid, "promoted")
        (decided,) = decisions(gk, rid)
        assert decided["decision"] == "start"
        assert decided["reason"].startswith(f"{rid} starts: production has no deploy window")
        assert (decided["controller"], decided["epoch"]) == ("test-replica", 1)
        body = gk.call("GET", f"/api/v1/releases/{rid}", "vera").json()
        assert {s["status"] for s in body["steps"]} == {"done"}
        assert all(s["completed_at"] for s in body["steps"])
        kinds = [e["kind"] for e in body["events"]]
        assert kinds[:2] == ["submitted", "started"]


def test_a_standby_starts_nothing(db_url: str):
    with serving(db_url) as gk:
        rid = gk.submit(local_spec())["release_id"]
        gk.tick()
        assert phase(gk, rid) == "queued"


def test_one_release_per_app_and_environment_the_rest_wait_in_submission_order(db_url: str):
    run = FakeRun(instant=False)
    with serving(db_url, run=run) as gk:
        v2 = gk.submit(local_spec("v2"))["release_id"]
        v3 = gk.submit(local_spec("v3"))["release_id"]
        v4 = gk.submit(local_spec("v4"))["release_id"]
        cart = gk.submit(local_spec("v2", app="cart"))["release_id"]
        staging = gk.submit(local_spec("v3", environment="staging"))["release_id"]
        gk.lead()
        gk.tick()
        for rid in (v2, cart, staging):
            wait_phase(gk, rid, "running")  # its driver took it up
        assert [phase(gk, r) for r in (v3, v4)] == ["queued", "queued"]
        assert reason(gk, v3) == (
            f"{v3} queued: {v2} is active for shop in production "
            "(one release per app and environment)"
        )
        assert reason(gk, v4).startswith(f"{v4} queued: {v2} is active for shop in production")
        gk.tick()  # the same decisions are not recorded twice
        assert [d["cause"] for d in decisions(gk, v4)] == ["active"]
        assert 'gatekeeper_queue_length{app="shop",environment="production"} 2.0' in (
            gk.call("GET", "/metrics", None).text
        )
        run.finish(v2)
        wait_phase(gk, v2, "promoted")
        gk.tick()
        wait_phase(gk, v3, "running")
        assert phase(gk, v4) == "queued"
        assert reason(gk, v4).startswith(f"{v4} queued: {v3} is active for shop in production")
        for rid in (v3, cart, staging):
            run.finish(rid)
        wait_phase(gk, v3, "promoted")
        gk.tick()
        run.finish(v4)
        wait_phase(gk, v4, "promoted")


def test_a_release_outside_its_window_is_queued_until_the_window_opens(db_url: str):
    clock = FakeClock(SATURDAY)
    with serving(db_url, clock=clock, config={"policy": POLICY}) as gk:
        rid = gk.submit(local_spec())["release_id"]
        gk.lead()
        gk.tick()
        assert phase(gk, rid) == "queued"
        assert reason(gk, rid) == (
            f"{rid} queued: production window Mon-Fri 09:00-17:00 Europe/Berlin is closed; "
            "opens Mon 2026-12-07 09:00 CET"
        )
        (queued,) = decisions(gk, rid)
        assert (queued["cause"], queued["not_before"]) == ("window", "2026-12-07T08:00:00+00:00")
        later = gk.submit(local_spec("v3"))["release_id"]
        gk.tick()
        assert (
            reason(gk, later) == f"{later} queued: position 2 for shop in production, behind {rid}"
        )
        clock.t = MONDAY_9 - timedelta(seconds=1)
        gk.tick()
        assert phase(gk, rid) == "queued"
        clock.t = MONDAY_9
        gk.tick()
        wait_phase(gk, rid, "promoted")
        assert decisions(gk, rid)[-1]["decision"] == "start"
        gk.tick()
        wait_phase(gk, later, "promoted")


def test_an_expedited_hotfix_outside_its_window_waits_for_its_approval_then_starts(db_url: str):
    clock = FakeClock(SATURDAY)
    hotfix = local_spec("v2-hotfix", expedited=True, expedited_reason="INC-1: 500s at checkout")
    with serving(db_url, clock=clock, config={"policy": POLICY}) as gk:
        rid = gk.submit(hotfix)["release_id"]
        assert gk.call("GET", f"/api/v1/releases/{rid}", "vera").json()["steps"][0]["name"] == (
            "approve-expedited"
        )
        gk.lead()
        gk.tick()
        assert reason(gk, rid).startswith(
            f"expedited hotfix {rid} waits for approval by an engineering lead or the CTO ("
        )
        approve = f"/api/v1/releases/{rid}/steps/approve-expedited/approve"
        denied = gk.call("POST", approve, "rita", {"comment": "go"})
        assert denied.status_code == 403
        assert denied.json()["missing_roles"] == ["engineering-lead", "cto"]
        assert gk.call("POST", approve, "ada", {}).status_code == 403
        gk.tick()
        assert phase(gk, rid) == "queued"
        assert gk.call("POST", approve, "leo", {"comment": "go"}).status_code == 200
        gk.tick()
        wait_phase(gk, rid, "promoted")
        started = decisions(gk, rid)[-1]
        assert started["decision"] == "start"
        assert started["reason"].startswith(
            f"approved expedited hotfix {rid} starts outside its window: production window"
        )


def test_an_approved_hotfix_goes_ahead_of_releases_waiting_for_the_window(db_url: str):
    clock = FakeClock(SATURDAY)
    run = FakeRun(instant=False)
    with serving(db_url, run=run, clock=clock, config={"policy": POLICY}) as gk:
        plain = gk.submit(local_spec("v2"))["release_id"]
        fix = gk.submit(local_spec("v3", expedited=True, expedited_reason="INC-2"))["release_id"]
        gk.call("POST", f"/api/v1/releases/{fix}/steps/approve-expedited/approve", "cora", {})
        gk.lead()
        gk.tick()
        wait_phase(gk, fix, "running")
        assert phase(gk, plain) == "queued"
        run.finish(fix)
        wait_phase(gk, fix, "promoted")


def test_a_release_aborted_while_queued_never_starts(db_url: str):
    with serving(db_url) as gk:
        rid = gk.submit(local_spec())["release_id"]
        gk.call("POST", f"/api/v1/releases/{rid}/abort", "rita", {"reason": "not today"})
        gk.lead()
        gk.tick()
        assert phase(gk, rid) == "aborted"
        assert decisions(gk, rid) == []


class FailingRun:
    def __init__(self) -> None:
        self.calls = 0
        self.healthy = FakeRun()

    def __call__(self, spec: ReleaseSpec, options: RunOptions) -> Outcome:
        self.calls += 1
        if self.calls == 1:
            raise GatekeeperError("prometheus at http://prom:9090 does not answer")
        return self.healthy(spec, options)


def test_a_release_whose_run_fails_to_start_is_stalled_until_a_person_retries(db_url: str):
    run = FailingRun()
    with serving(db_url, run=run) as gk:
        rid = gk.submit(local_spec())["release_id"]
        gk.lead()
        gk.tick()
        deadline = time.monotonic() + 10
        while gk.call("GET", f"/api/v1/releases/{rid}", "vera").json()["stalled"] is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        body = gk.call("GET", f"/api/v1/releases/{rid}", "vera").json()
        assert body["stalled"] == "GatekeeperError: prometheus at http://prom:9090 does not answer"
        assert body["phase"] == "pending"
        gk.tick()
        time.sleep(0.2)
        assert run.calls == 1  # not restarted on its own
        assert gk.call("POST", f"/api/v1/releases/{rid}/retry", "rita", {}).status_code == 200
        gk.tick()
        wait_phase(gk, rid, "promoted")
        assert run.calls == 2


def test_an_abort_of_a_running_release_is_finished_by_its_driver(db_url: str):
    run = FakeRun(instant=False)
    with serving(db_url, run=run) as gk:
        rid = gk.submit(local_spec())["release_id"]
        gk.lead()
        gk.tick()
        wait_phase(gk, rid, "running")
        r = gk.call("POST", f"/api/v1/releases/{rid}/abort", "rita", {"reason": "freeze"})
        # the answer shows the release as it is when answered: its driver (polling every
        # 50 ms) may have finished the rollback already
        assert (r.status_code, r.json()["phase"] in ("rolling_back", "aborted")) == (200, True)
        wait_phase(gk, rid, "aborted")
        assert reason(gk, rid) == "aborted by rita: freeze"
        assert run.runs[rid] == 1  # finished by the driver that ran it, not a new one


def test_an_abort_of_a_stalled_release_is_rolled_back_by_a_new_driver(db_url: str):
    run = FailingRun()
    with serving(db_url, run=run) as gk:
        rid = gk.submit(local_spec())["release_id"]
        gk.lead()
        gk.tick()
        deadline = time.monotonic() + 10
        while gk.call("GET", f"/api/v1/releases/{rid}", "vera").json()["stalled"] is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        r = gk.call("POST", f"/api/v1/releases/{rid}/abort", "rita", {"reason": "give up"})
        assert (r.json()["phase"], r.json()["stalled"]) == ("rolling_back", None)
        gk.tick()
        wait_phase(gk, rid, "aborted")
        assert run.calls == 2
