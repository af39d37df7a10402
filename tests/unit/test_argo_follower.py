"""The Argo executor's follower against a fake of our own Argo client (workflows.client): what
it records, when it resumes, fails or stops a node, how it rides out an argo-server outage, and
that it never follows another store's workflow. The store is a real SQLite file.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from hera.exceptions import Forbidden, HeraException, InternalServerError, NotFound

from gatekeeper.domain.errors import InvalidInput, TemporaryError
from gatekeeper.domain.release import Phase, ReleaseSpec, parse_release
from gatekeeper.engine import argo_executor
from gatekeeper.engine.argo_executor import NODE_EVENT, OUTAGE_EVENT, RELEASE_MARK, run_on_argo
from gatekeeper.engine.argo_settings import ArgoSettings
from gatekeeper.engine.executor import new_record
from gatekeeper.store.base import Approval
from gatekeeper.store.factory import open_store
from gatekeeper.store.sql import SqlStore
from strategies.registry import plan_for
from tests.support.fakes import T0
from workflows import client as client_module
from workflows.client import NodeView, WorkflowView


def spec(approvals: tuple[str, ...] = ()) -> ReleaseSpec:
    return parse_release(
        {
            "app": "shop",
            "environment": "prod",
            "version": "v2",
            "image": "shop:v2",
            "stable": {"version": "v1", "image": "shop:v1"},
            "strategy": {"type": "canary", "steps": [50, 100]},
            "target": {"type": "kubernetes", "namespace": "shop"},
            "executor": "argo",
            "approvals": list(approvals),
        }
    )


def node(step: str, phase: str, kind: str = "Pod", attempt: int = 0) -> NodeView:
    name = f"s{step}" + (f"({attempt})" if kind == "Pod" else "-suspend")
    return NodeView(
        id=f"n-{step}-{kind}-{attempt}",
        display_name=name,
        template="step" if kind == "Pod" else "approval",
        type=kind,
        phase=phase,
        message="",
        step=step,
    )


class FakeArgo:
    """Our ArgoClient's surface; each status() returns the next scripted view (or raises)."""

    namespace = "argo"

    def __init__(self, script: list[Any], existing_mark: str | None = None) -> None:
        self.script = script
        self.existing_mark = existing_mark
        self.calls: list[tuple[str, ...]] = []
        self.mark = ""

    def ensure_template(self, template: dict[str, Any]) -> str:
        self.calls.append(("ensure_template", template["metadata"]["name"]))
        return "created"

    def submit(self, workflow: dict[str, Any]) -> tuple[WorkflowView, bool]:
        name = workflow["metadata"]["name"]
        self.mark = workflow["metadata"]["annotations"][RELEASE_MARK]
        self.calls.append(("submit", name))
        if self.existing_mark is not None:
            view = WorkflowView(name, "argo", "Running", "", (), {RELEASE_MARK: self.existing_mark})
            return view, False
        return WorkflowView(name, "argo", "", "", ()), True

    def status(self, name: str) -> WorkflowView | None:
        item = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(item, BaseException):
            raise item
        phase, nodes = item
        return WorkflowView(name, "argo", phase, "", tuple(nodes), {RELEASE_MARK: self.mark})

    def resume(self, name: str, step: str) -> None:
        self.calls.append(("resume", step))

    def fail_node(self, name: str, step: str, message: str) -> None:
        self.calls.append(("fail_node", step, message))

    def stop(self, name: str, message: str) -> None:
        self.calls.append(("stop", message))

    def watch(self, name: str, changed: Any, stop: threading.Event) -> None:
        self.calls.append(("watch", name))
        stop.wait(0.05)

    def close(self) -> None:
        pass


@pytest.fixture
def store(tmp_path: Path):
    s = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    yield s
    s.close()


def follow(
    store: SqlStore,
    s: ReleaseSpec,
    fake: FakeArgo,
    monkeypatch: pytest.MonkeyPatch,
    poll_s: float = 0.0,
):
    plan = plan_for(s)
    if store.get_release(s.release_id) is None:
        store.create_release(new_record(s, plan, T0))
    monkeypatch.setattr(argo_executor, "client_for", lambda settings: fake)
    settings = ArgoSettings(server="http://argo.test:2746", poll_s=poll_s)
    return run_on_argo(s, plan, store, settings, db_url=None, prometheus_url="http://prom.test")


def node_events(store: SqlStore, s: ReleaseSpec) -> list[str]:
    return [e.message for e in store.events(s.release_id) if e.kind == NODE_EVENT]


def test_each_node_phase_change_is_recorded_once_and_the_outcome_is_the_stores(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = spec()
    running = ("Running", [node("0", "Running")])
    done = ("Succeeded", [node("0", "Succeeded"), node("1", "Succeeded")])

    class Promote(FakeArgo):
        def status(self, name: str) -> WorkflowView | None:
            view = super().status(name)
            if view is not None and view.phase == "Succeeded":
                store.set_phase(s.release_id, Phase.RUNNING, "running promote")
                store.set_phase(s.release_id, Phase.PROMOTED, "shop v2 promoted")
            return view

    fake = Promote([running, running, running, done])
    out = follow(store, s, fake, monkeypatch)
    assert out.phase is Phase.PROMOTED and out.reason == "shop v2 promoted"
    assert node_events(store, s) == [
        "s0(0) Running",
        "s0(0) Succeeded",
        "s1(0) Succeeded",
    ]
    assert fake.calls[:2] == [
        ("ensure_template", "gatekeeper-release-steps"),
        ("submit", "shop-prod-v2"),
    ]


def test_an_argo_server_outage_is_recorded_once_and_followed_through(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = spec()
    down = TemporaryError("argo-server http://argo.test:2746/: connection refused")
    fake = FakeArgo(
        [
            ("Running", [node("0", "Running")]),
            down,
            down,
            down,
            ("Failed", [node("0", "Failed")]),
        ]
    )
    out = follow(store, s, fake, monkeypatch)
    said = [e.message for e in store.events(s.release_id) if e.kind == OUTAGE_EVENT]
    assert len(said) == 2, said
    assert said[0].startswith("unreachable, following on when it answers: argo-server")
    assert said[1].startswith("answers again")
    # the store never ended: the outcome says what the workflow did
    assert out.phase is Phase.PENDING
    assert "Workflow shop-prod-v2 Failed" in out.reason


def test_an_approval_in_the_store_resumes_the_suspend_node_once(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = spec(approvals=("shift-100",))
    plan = plan_for(s)
    index = str(plan.index_of("approve-shift-100"))
    store.create_release(new_record(s, plan, T0))
    suspended = ("Running", [node(index, "Running", kind="Suspend")])
    fake = FakeArgo([suspended, suspended, suspended, ("Succeeded", [])])
    # no approval yet: nothing is resumed on the first reads
    first = FakeArgo([suspended, ("Succeeded", [])])
    follow(store, s, first, monkeypatch)
    assert not [c for c in first.calls if c[0] == "resume"]
    # a release manager's approval is in the store: resumed, once
    store.add_approval(Approval(s.release_id, "approve-shift-100", "rm", "release-manager", T0))
    follow(store, s, fake, monkeypatch)
    assert [c for c in fake.calls if c[0] == "resume"] == [("resume", index)]


def test_an_abort_in_the_store_stops_the_workflow(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = spec()
    store.create_release(new_record(s, plan_for(s), T0))
    store.set_phase(s.release_id, Phase.ABORTED, "aborted by rm: freeze")
    fake = FakeArgo([("Running", [node("2", "Running")]), ("Failed", [])])
    out = follow(store, s, fake, monkeypatch)
    assert ("stop", "aborted: aborted by rm: freeze") in fake.calls
    assert out.phase is Phase.ABORTED


def test_a_release_rolling_back_fails_the_approval_the_workflow_waits_on(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = spec(approvals=("shift-100",))
    plan = plan_for(s)
    index = str(plan.index_of("approve-shift-100"))
    store.create_release(new_record(s, plan, T0))
    store.set_phase(s.release_id, Phase.ROLLING_BACK, "guard: abort: error ratio 9% > 5%")
    suspended = ("Running", [node(index, "Running", kind="Suspend")])
    fake = FakeArgo([suspended, ("Failed", [])])
    follow(store, s, fake, monkeypatch)
    assert ("fail_node", index, "guard: abort: error ratio 9% > 5%") in fake.calls


def test_a_workflow_of_that_name_from_another_store_is_refused(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = spec()
    fake = FakeArgo([("Succeeded", [])], existing_mark="2020-01-01T00:00:00+00:00")
    with pytest.raises(InvalidInput, match="exists but runs another release shop-prod-v2"):
        follow(store, s, fake, monkeypatch)


def test_a_second_run_of_the_same_release_follows_its_workflow(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = spec()
    store.create_release(new_record(s, plan_for(s), T0))
    record = store.get_release(s.release_id)
    assert record is not None
    fake = FakeArgo([("Running", []), ("Failed", [])], existing_mark=record.created_at.isoformat())
    follow(store, s, fake, monkeypatch)
    said = [e.message for e in store.events(s.release_id) if e.kind == "workflow-submitted"]
    assert said == ["Workflow argo/shop-prod-v2 found running; following it"]


@pytest.mark.parametrize(
    ("exc", "temporary"),
    [
        (HeraException("Server returned status code 503 with message: `connection error`"), True),
        (HeraException("Server returned status code 502 with message: `bad gateway`"), True),
        (InternalServerError("Server returned status code 500 with message: `x`"), True),
        (HeraException("Server returned status code 429 with message: `slow down`"), True),
        (NotFound("Server returned status code 404 with message: `not found`"), False),
        (Forbidden("Server returned status code 403 with message: `no`"), False),
        (requests.ConnectionError("refused"), True),
    ],
)
def test_what_argo_server_says_is_worth_a_retry(exc: BaseException, temporary: bool) -> None:
    assert client_module._temporary(exc) is temporary


def test_the_watch_stream_wakes_the_follower_between_its_reads(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = spec()

    class Streaming(FakeArgo):
        """argo-server streams an event for each change: three, then the workflow ends."""

        def watch(self, name: str, changed: Any, stop: threading.Event) -> None:
            for _ in range(3):
                time.sleep(0.05)
                changed()
            stop.wait(5)

    fake = Streaming([("Running", [node("0", "Running")]), ("Running", []), ("Succeeded", [])])
    started = time.monotonic()
    follow(store, s, fake, monkeypatch, poll_s=60.0)  # no read would come from polling
    assert time.monotonic() - started < 10
