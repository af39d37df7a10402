"""The gateway's 5xx as a P0 signal on the bed: a candidate whose processes stop answering in
the middle of its analysis is rolled back from what Traefik answered its users (503: no ready
endpoint left), while the app's own metrics have nothing to say (a stopped process is not
scraped and counts nothing)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from gatekeeper.domain.release import Phase, parse_release
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


def test_a_candidate_that_stops_answering_is_rolled_back_from_the_gateways_5xx(
    bed: ClusterBed, raw: Raw, namespace: str, tmp_path: Path, stopped: list[int]
) -> None:
    # Given the demo app at v1 behind the Gateway, and a release of v2 whose guard also
    # reads Traefik's per-backend counter; the P0 signals of the pods are out of the way
    # (a stopped process is not ready, but not_ready_grace is 10 minutes)
    app = install_demo_app(bed, raw, namespace, router="gateway-api")
    kubeconfig = service_account_kubeconfig(bed, raw, namespace)
    classic = default_gates().gates[:3]  # abort, sustained, latency: the app's own metrics
    spec = parse_release(
        {
            "app": "shop",
            "environment": "e2e",
            "version": "v2",
            "image": "demo:v2",
            "stable": {"version": "v1", "image": "demo:v1"},
            "strategy": {"type": "canary", "steps": [50, 100], "analysis": "5m"},
            "gates": {"gates": [g.model_dump(mode="json", exclude_none=True) for g in classic]},
            "target": {
                "type": "kubernetes",
                "namespace": namespace,
                "router": "gateway-api",
                "gateway_metrics": "traefik",
                "not_ready_grace": "10m",
                "progress_deadline": "60s",
                "drain": "2s",
            },
            "time_scale": TIME_SCALE,
            "hold_timeout": "30m",
        }
    )

    def stop_the_candidate_once_it_has_users() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not stopped:
            if _candidate_weight(raw, namespace) > 0:
                time.sleep(2.0)  # it serves for a moment first
                for pid in _processes_of(raw, namespace):
                    os.kill(pid, signal.SIGSTOP)
                    stopped.append(pid)
                return
            time.sleep(0.2)

    # When its processes stop answering once it has users
    stopper = threading.Thread(target=stop_the_candidate_once_it_has_users, daemon=True)
    with load_on(bed, app) as load:
        started = load.mark()
        stopper.start()
        outcome = run(spec, bed, kubeconfig, tmp_path)
        ended = load.mark()
        time.sleep(1.5)
    stopper.join(5)
    timeline = events(tmp_path, outcome.release_id)
    story = describe(load, timeline, started)

    # Then the gateway guard rolls it back, on the 5xx users got from the Gateway
    assert stopped, f"the candidate never got traffic\n{story}"
    assert outcome.phase is Phase.ROLLED_BACK, f"{outcome.reason}\n{story}"
    assert outcome.reason.startswith("gateway: value "), f"{outcome.reason}\n{story}"
    during = load.between(started, ended)
    assert any(code >= 500 for code in during.by_code), str(during)

    # and afterwards users see only stable; every object is as it was
    after = load.between(ended)
    assert after.by_version == {"v1": after.sent} and after.sent > 0, str(after)
    assert snapshot(raw, namespace) == app.before
