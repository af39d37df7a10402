"""Helpers of the whole-release tests on the bed: the demo app installed from images, a release
run in process through the Gateway with the bed's Prometheus, and its timeline of traffic
steps read from the store, to compare with what a load generator saw.

The app is installed as a user keeps it: a Deployment `shop` whose container has no command
(its image says what runs: `demo:v1`, `demo:v2-bad`, ... in the bed's registry), a Service
`shop`, and an HTTPRoute `shop` on the bed's Gateway with a hostname of its own. The release
changes only the image and the version label, as it would on a real cluster.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.domain.release import ReleaseSpec, parse_release
from gatekeeper.engine.executor import Outcome
from gatekeeper.engine.runner import RunOptions, run_release
from gatekeeper.store.base import Event
from gatekeeper.store.factory import open_store
from tests.e2e.kubernetes_target import Obj, Raw, service, snapshot, wait_until
from tests.e2e.testbed import ClusterBed
from tests.e2e.testbed.apps import image_container
from tests.e2e.testbed.kubelet import APP_LABEL, APP_LABEL_VALUE
from tests.e2e.testbed.traffic import BackgroundLoad, TrafficResult

TIME_SCALE = 30.0  # the default gates' 2m abort window is 4 s, a 5m analysis 10 s
SIGMAS = 4.0  # a step's share within 4 binomial standard deviations of its weight
# After a traffic change is recorded, how long the data plane may take to apply it: Traefik
# applies a route within ~0.5 s; a Service's selector or endpoints go through the
# EndpointSlice controller first (~1 s more).
SETTLE_S = 2.0
BEFORE_NEXT_S = 0.3  # a span ends this long before the next traffic change starts

STRATEGIES: dict[str, dict[str, Any]] = {
    "canary": {"type": "canary", "steps": [20, 50, 100], "analysis": "5m"},
    "blue-green": {"type": "blue-green", "bake": "5m", "scale_down_delay": "30s"},
    "rolling": {"type": "rolling", "batches": [33, 67, 100], "analysis": "5m"},
}


# The writes of a canary [20, 50, 100] over gateway-api never interrupted, by (verb, resource,
# name): what a resumed or retried release must not exceed.
CANARY_WRITES = Counter(
    {
        # pinned to v1 before the candidate's first pod exists; pinned to stable's new pods
        # at promotion; its own selector back once the candidate is gone
        ("patch", "services", "shop"): 3,
        ("create", "services", "shop-candidate"): 1,
        ("delete", "services", "shop-candidate"): 1,
        ("create", "deployments", "shop-candidate"): 1,
        ("delete", "deployments", "shop-candidate"): 1,
        # candidate 20%, 50%, 100%, then all back on the stable Service after promotion
        ("patch", "httproutes", "shop"): 4,
        # promoted in place (image, version label), then the original record dropped
        ("patch", "deployments", "shop"): 2,
    }
)


@dataclass
class DemoApp:
    namespace: str
    host: str
    router: str
    replicas: int
    before: dict[str, Obj]
    """Every object a release could touch, as installed (kubernetes_target.snapshot)."""


def install_demo_app(
    bed: ClusterBed, raw: Raw, ns: str, *, router: str, replicas: int = 2, image: str = "demo:v1"
) -> DemoApp:
    """Deployment `shop` (pods run ``image``, version v1), Service `shop`, and an HTTPRoute
    `shop` on the bed's Gateway (the router's for gateway-api; for the others, the user's way
    in to the Service, which the release leaves alone); ready and served through the
    Gateway."""
    host = f"shop.{ns}.test"
    raw.create(
        "Deployment",
        ns,
        {
            "metadata": {"name": "shop", "labels": {"app": "shop"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "shop"}},
                "template": {
                    "metadata": {
                        "labels": {"app": "shop", "version": "v1", APP_LABEL: APP_LABEL_VALUE}
                    },
                    "spec": {
                        "terminationGracePeriodSeconds": 3,  # the image drains 1.5 s
                        "containers": [image_container(image)],
                    },
                },
            },
        },
    )
    raw.create("Service", ns, service())
    raw.create(
        "HTTPRoute",
        ns,
        {
            "metadata": {"name": "shop"},
            "spec": {
                "parentRefs": [{"name": bed.gateway_name, "namespace": bed.gateway_namespace}],
                "hostnames": [host],
                "rules": [{"backendRefs": [{"name": "shop", "port": 80}]}],
            },
        },
    )
    wait_until(
        lambda: (
            (raw.get("Deployment", ns, "shop") or {}).get("status", {}).get("readyReplicas")
            == replicas
        ),
        60,
        "the demo's stable pods to be ready",
    )
    wait_for_versions(bed, host, {"v1"})
    return DemoApp(ns, host, router, replicas, snapshot(raw, ns))


def wait_for_versions(bed: ClusterBed, host: str, versions: set[str], timeout: float = 30) -> None:
    def seen() -> bool:
        probe = bed.send_traffic(host, requests=40, concurrency=4)
        return set(probe.by_version) == versions and set(probe.by_code) == {200}

    wait_until(seen, timeout, f"the Gateway to serve exactly {sorted(versions)}")


def release_spec(
    app: DemoApp,
    strategy: str,
    *,
    version: str = "v2",
    image: str | None = None,
    stable_version: str = "v1",
    stable_image: str | None = None,
    time_scale: float = TIME_SCALE,
    environment: str = "e2e",
    **target: Any,
) -> ReleaseSpec:
    settings: dict[str, Any] = {
        "type": "kubernetes",
        "namespace": app.namespace,
        "router": app.router,
        "progress_deadline": "60s",
        "drain": "2s",
        **target,
    }
    if app.router == "replica-ratio":
        settings.setdefault("replicas", app.replicas)
    return parse_release(
        {
            "app": "shop",
            "environment": environment,
            "version": version,
            "image": image or f"demo:{version}",
            "stable": {
                "version": stable_version,
                "image": stable_image or f"demo:{stable_version}",
            },
            "strategy": STRATEGIES[strategy],
            "target": settings,
            "time_scale": time_scale,
            "hold_timeout": "30m",
        }
    )


def run(spec: ReleaseSpec, bed: ClusterBed, kubeconfig: Path, work: Path) -> Outcome:
    """`gatekeeper run` in process, as the ServiceAccount of ``kubeconfig``, judged by the
    bed's Prometheus with the default gates."""
    return run_release(spec, options(bed, kubeconfig, work))


def options(bed: ClusterBed, kubeconfig: Path, work: Path) -> RunOptions:
    return RunOptions(
        prometheus_url=bed.prometheus_url,
        kubeconfig=str(kubeconfig),
        db_url=db_url(work),
        state_dir=work / "state",
        # The bed's Prometheus finds a new pod within 5-10 s (discovery passes updates on
        # every 5 s); the candidate's first scrape follows.
        metrics_timeout_s=45.0,
    )


def db_url(work: Path) -> str:
    return f"sqlite:///{work / 'gatekeeper.db'}"


def events(work: Path, release_id: str) -> list[Event]:
    store = open_store(db_url(work))
    try:
        return sorted(store.events(release_id), key=lambda e: e.at)
    finally:
        store.close()


# -- the timeline of traffic steps --------------------------------------------------------------

_SHIFT = re.compile(r"traffic: candidate (\d+)% -> (\d+)%|traffic already at candidate (\d+)%")


@dataclass(frozen=True)
class Span:
    """A stretch of the release with one weight on the candidate (time.time() seconds)."""

    weight: int
    start: float
    end: float
    step: str
    began: float
    """When the step that made the change started (a replica-ratio batch moves users as its
    pods become ready, before the change is recorded)."""

    def settled(self) -> tuple[float, float]:
        """The span without the data plane's time to apply it and the next change's start."""
        return self.start + SETTLE_S, self.end - BEFORE_NEXT_S


def traffic_spans(timeline: list[Event]) -> list[Span]:
    """One span per traffic change: from its `shift` event to the end of the analysis that
    follows it (the second step completed after it), or to the rollback."""
    spans = []
    rollback = next((e.at.timestamp() for e in timeline if e.kind == "rollback"), None)
    for i, e in enumerate(timeline):
        match = _SHIFT.fullmatch(e.message) if e.kind == "shift" else None
        if match is None:
            continue
        weight = int(match.group(2) or match.group(3))
        completed = [x for x in timeline[i + 1 :] if x.kind == "step-completed"]
        ends = [x.at.timestamp() for x in completed[1:2]]
        if rollback is not None and rollback > e.at.timestamp():
            ends.append(rollback)
        if not ends:
            ends.append(timeline[-1].at.timestamp())
        step = completed[0].message if completed else "?"
        began = [
            x.at.timestamp()
            for x in timeline[:i]
            if x.kind == "step-started" and x.message.startswith(f"{step}:")
        ]
        start = e.at.timestamp()
        spans.append(Span(weight, start, min(ends), step, began[-1] if began else start))
    return spans


def at(timeline: list[Event], kind: str, contains: str = "") -> float:
    """The time of the first event of ``kind`` (whose message contains ``contains``)."""
    for e in timeline:
        if e.kind == kind and contains in e.message:
            return e.at.timestamp()
    kinds = [(e.kind, e.message) for e in timeline]
    pytest.fail(f"no {kind} event containing {contains!r}: {kinds}")


def share_ok(result: TrafficResult, version: str, expected: float) -> tuple[bool, str]:
    """Whether ``version``'s share of the versioned answers is within SIGMAS binomial
    standard deviations of ``expected`` (exactly all or none at 0 and 1)."""
    total = sum(result.by_version.values())
    count = result.by_version[version]
    sigma = math.sqrt(total * expected * (1 - expected))
    ok = total > 0 and abs(count - total * expected) <= SIGMAS * sigma
    return ok, f"{version}: {count}/{total}, expected {expected:.2f} ±{SIGMAS:g}σ ({result})"


def describe(load: BackgroundLoad, timeline: list[Event], since: float) -> str:
    """What went wrong, readably: the release's events and the load per second."""
    lines = [f"{e.at.timestamp() - since:7.2f}s {e.kind}: {e.message}" for e in timeline]
    lines += [
        f"{second:4d}s {dict(sorted(counts.items()))}" for second, counts in load.per_second(since)
    ]
    return "\n".join(lines)


@contextlib.contextmanager
def load_on(bed: ClusterBed, app: DemoApp, rps: float = 150.0) -> Iterator[BackgroundLoad]:
    with BackgroundLoad(bed.gateway_url, app.host, rps=rps, concurrency=8) as load:
        yield load


def namespace_for(raw: Raw, name: str) -> str:
    """A namespace ``name`` with its default ServiceAccount (outside pytest's fixtures)."""
    raw.ok("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    wait_until(
        lambda: raw.request("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default")[0] == 200,
        30,
        f"namespace {name}'s default service account",
    )
    return name


def first_exit(bed: ClusterBed, namespace: str, pod_prefix: str) -> float | None:
    """When the bed's kubelet first saw a container of a pod named ``pod_prefix``... exit
    (time.time() seconds, to the second: the kubelet's log stamps whole seconds)."""
    log = bed.log_dir / "kubelet.log"
    for line in log.read_text(errors="replace").splitlines():
        stamp, _, rest = line.partition(" ")
        if rest.startswith(f"{namespace}/{pod_prefix}") and ": exited with " in rest:
            return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    return None
