"""The gateway's 5xx as a P0 signal on the bed: a candidate whose processes stop answering, or
are killed, in the middle of its analysis is rolled back from what Traefik answered its users
(502: connection refused; 503: no ready endpoint left), while the app's own metrics have
nothing to say (a stopped or dead process is not scraped and counts nothing)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client

from gatekeeper.domain.release import Phase, ReleaseSpec, parse_release
from gates.spec import default_gates
from tests.e2e.kubernetes_release import describe, events, install_demo_app, load_on, run
from tests.e2e.kubernetes_target import Raw, service_account_kubeconfig, snapshot
from tests.e2e.testbed import ClusterBed

TIME_SCALE = 6.0  # the gateway guard's 30 s window is 5 s: five of Traefik's 1 s scrapes


@pytest.fixture
def raw(kube: client.ApiClient) -> Raw:
    return Raw(kube)


def _candidate_weight(raw: Raw, ns: str) -> int:
    route = raw.get("HTTPRoute", ns, "shop") or {}
    refs = [r for rule in route.get("spec", {}).get("rules", []) for r in rule["backendRefs"]]
    return sum(int(r.get("weight", 1)) for r in refs if r["name"] == "shop-candidate")


def _processes_of(raw: Raw, ns: str) -> list[int]:
    """The pids of the candidate's pods' processes: the bed's kubelet gives each its pod's
    address in POD_IP, as the Downward API does."""
    ips = {
        pod["status"]["podIP"]
        for pod in raw.pods(ns, "gatekeeper.dev/role=candidate")
        if pod.get("status", {}).get("podIP")
    }
    wanted = {f"POD_IP={ip}".encode() for ip in ips}
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = set((proc / "environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        if env & wanted:
            pids.append(int(proc.name))
    return pids


@pytest.fixture
def stopped() -> Iterator[list[int]]:
    """Processes the test stops; continued afterwards so the bed can end them."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def _release(namespace: str, image: str, **target: object) -> ReleaseSpec:
    """A canary of v2 whose guard also reads Traefik's per-backend counters; the gates on the
    app's own metrics are abort, sustained and latency."""
    classic = default_gates().gates[:3]
    return parse_release(
        {
            "app": "shop",
            "environment": "e2e",
            "version": "v2",
            "image": image,
            "stable": {"version": "v1", "image": "demo:v1"},
            "strategy": {"type": "canary", "steps": [50, 100], "analysis": "5m"},
            "gates": {"gates": [g.model_dump(mode="json", exclude_none=True) for g in classic]},
            "target": {
                "type": "kubernetes",
                "namespace": namespace,
                "router": "gateway-api",
                "gateway_metrics": "traefik",
                "progress_deadline": "60s",
                "drain": "2s",
                **target,
            },
            "time_scale": TIME_SCALE,
            "hold_timeout": "30m",
        }
    )


def _once_it_has_users(raw: Raw, ns: str, act: Callable[[int], None], done: list[int]) -> None:
    """Waits for the candidate's first weight, lets it serve a moment, then acts on each of
    its processes (recording their pids in ``done``)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if _candidate_weight(raw, ns) > 0:
            time.sleep(2.0)
            for pid in _processes_of(raw, ns):
                act(pid)
                done.append(pid)
            return
        time.sleep(0.2)


def _release_through_the_gateway(
    bed: ClusterBed,
    raw: Raw,
    namespace: str,
    tmp_path: Path,
    spec: ReleaseSpec,
    act: Callable[[int], None],
    done: list[int],
) -> None:
    """Runs ``spec`` under load while ``act`` hits the candidate's processes once it has
    users; then checks the gateway guard rolled it back and left everything as it was."""
    app = install_demo_app(bed, raw, namespace, router="gateway-api")
    kubeconfig = service_account_kubeconfig(bed, raw, namespace)
    actor = threading.Thread(
        target=_once_it_has_users, args=(raw, namespace, act, done), daemon=True
    )
    with load_on(bed, app) as load:
        started = load.mark()
        actor.start()
        outcome = run(spec, bed, kubeconfig, tmp_path)
        ended = load.mark()
        time.sleep(1.5)
    actor.join(5)
    timeline = events(tmp_path, outcome.release_id)
    story = describe(load, timeline, started)

    # Then the gateway guard rolls it back, on the 5xx users got from the Gateway
    assert done, f"the candidate never got traffic\n{story}"
    assert outcome.phase is Phase.ROLLED_BACK, f"{outcome.reason}\n{story}"
    assert outcome.reason.startswith("gateway: value "), f"{outcome.reason}\n{story}"
    during = load.between(started, ended)
    assert any(code >= 500 for code in during.by_code), str(during)

    # and afterwards users see only stable; every object is as it was
    after = load.between(ended)
    assert after.by_version == {"v1": after.sent} and after.sent > 0, str(after)
    assert snapshot(raw, namespace) == app.before


def test_a_candidate_that_stops_answering_is_rolled_back_from_the_gateways_5xx(
    bed: ClusterBed, raw: Raw, namespace: str, tmp_path: Path, stopped: list[int]
) -> None:
    # Given the demo app at v1 behind the Gateway, and a release of v2; the P0 signals of the
    # pods are out of the way (a stopped process is not ready, but not_ready_grace is 10m)
    spec = _release(namespace, "demo:v2", not_ready_grace="10m")

    # When its processes stop answering (SIGSTOP) once it has users: see the helper's checks
    def stop(pid: int) -> None:
        os.kill(pid, signal.SIGSTOP)

    _release_through_the_gateway(bed, raw, namespace, tmp_path, spec, stop, stopped)


def test_a_candidate_killed_mid_analysis_is_rolled_back_from_the_gateways_5xx(
    bed: ClusterBed, raw: Raw, namespace: str, tmp_path: Path
) -> None:
    # Given a release of v2, an app that takes 3 s to start, whose user tolerates a few
    # restarts (max_restarts 3): the kubelet restarts a killed container at once, so the
    # restart signal is out of the way and only what users got from the Gateway can tell
    spec = _release(namespace, "demo:v2-slow-start", max_restarts=3, not_ready_grace="10m")

    # When its processes are killed (SIGKILL) once it has users, as an OOM kill would
    def kill(pid: int) -> None:
        os.kill(pid, signal.SIGKILL)

    killed: list[int] = []
    _release_through_the_gateway(bed, raw, namespace, tmp_path, spec, kill, killed)
