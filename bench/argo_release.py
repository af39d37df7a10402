"""What running a release as an Argo Workflow costs on the test bed, beside the local executor.

The bed (tests/e2e/testbed: a real API server, the Argo workflow-controller and argo-server,
step pods run as local processes, Traefik as the Gateway, Prometheus scraping the pods every
second) runs the demo app `shop` at v1 (2 replicas) while a load generator sends `--rps`
requests a second through the Gateway.

1. Step transitions: one good canary (20/50/100, time compressed 30x, an approval before the
   last shift given in advance) run by Argo and the same release run in process. A
   transition is the time from one step's `step-completed` event to the next step's
   `step-started` (under Argo: the node's completion seen by the controller, the next pod
   created, scheduled, started, and the step's process up; for the approval, its suspend
   node and the resume).
2. Detection-to-safety under Argo, with the guard branch: a version whose image answers 10%
   of requests with 500, as a canary at 25% with a 10m analysis, uncompressed: from the shift
   to 25% to the rollback's event (the guard pod's or the step pod's gate failing), to the
   load generator's last answer from the candidate, and to the rolled_back phase.

    .venv/bin/python bench/argo_release.py [--runs 3] [--rps 150] [--json]
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from kubernetes import config  # noqa: E402

from gatekeeper.domain.release import Phase, ReleaseSpec, parse_release  # noqa: E402
from gatekeeper.engine.runner import run_release  # noqa: E402
from gatekeeper.store.base import Event  # noqa: E402
from tests.e2e.argo_release import WORKFLOW_SERVICE_ACCOUNT, argo_options  # noqa: E402
from tests.e2e.kubernetes_release import (  # noqa: E402
    DemoApp,
    events,
    install_demo_app,
    namespace_for,
    options,
    release_spec,
)
from tests.e2e.kubernetes_target import Raw, service_account_kubeconfig  # noqa: E402
from tests.e2e.testbed import ClusterBed, start_bed  # noqa: E402
from tests.e2e.testbed.images import demo_image  # noqa: E402
from tests.e2e.testbed.traffic import BackgroundLoad  # noqa: E402

BAD_IMAGE = "demo:bench-10pct"
ERROR_RATE = 0.10
APPROVER = ("release-manager", "rm")


def transitions(timeline: list[Event]) -> list[tuple[str, float]]:
    """(next step, seconds from the previous step's completion to its start)."""
    found = []
    completed: float | None = None
    for e in timeline:
        if e.kind == "step-completed":
            completed = e.at.timestamp()
        elif e.kind == "step-started" and completed is not None:
            found.append((e.message.split(":", 1)[0], e.at.timestamp() - completed))
            completed = None
    return found


def good_release(
    app: DemoApp, bed: ClusterBed, kubeconfig: Path, executor: str, stable: str, version: str
) -> list[tuple[str, float]]:
    spec = release_spec(
        app,
        "canary",
        version=version,
        image="demo:v2",
        stable_version=stable,
        stable_image="demo:v1" if stable == "v1" else "demo:v2",
        environment=app.namespace,
    )
    data = spec.model_dump(mode="json", exclude_none=True)
    data.update(approvals=["shift-100"], executor=executor)
    spec = parse_release(data)
    work = Path(tempfile.mkdtemp(prefix="gk-bench-argo-"))
    base = argo_options(bed, kubeconfig, work) if executor == "argo" else None
    opts = replace(base or options(bed, kubeconfig, work), approve=[APPROVER])
    out = run_release(spec, opts)
    if out.phase is not Phase.PROMOTED:
        raise SystemExit(f"{executor}: expected a promotion, got {out.phase.value}: {out.reason}")
    return transitions(sorted(events(work, spec.release_id), key=lambda e: e.at))


def bad_release(
    i: int, app: DemoApp, bed: ClusterBed, kubeconfig: Path, load: BackgroundLoad, stable: str
) -> tuple[float, float, float]:
    version = f"bad{i}"
    spec: ReleaseSpec = parse_release(
        {
            "app": "shop",
            "environment": app.namespace,
            "version": version,
            "image": BAD_IMAGE,
            "stable": {"version": stable, "image": "demo:v2"},
            "strategy": {"type": "canary", "steps": [25, 100], "analysis": "10m"},
            "target": {
                "type": "kubernetes",
                "namespace": app.namespace,
                "router": "gateway-api",
                "progress_deadline": "60s",
            },
            "hold_timeout": "10m",
            "executor": "argo",
        }
    )
    work = Path(tempfile.mkdtemp(prefix="gk-bench-argo-bad-"))
    out = run_release(spec, argo_options(bed, kubeconfig, work))
    if out.phase is not Phase.ROLLED_BACK:
        raise SystemExit(f"run {i}: expected a rollback, got {out.phase.value}: {out.reason}")
    timeline = sorted(events(work, spec.release_id), key=lambda e: e.at)
    shifted = next(e.at for e in timeline if e.kind == "shift" and "-> 25%" in e.message)
    rollback = next(e.at for e in timeline if e.kind == "rollback")
    done = next(e.at for e in timeline if e.kind == "phase" and "rolled_back" in e.message)
    time.sleep(1.0)
    last_seen = max(a.at for a in load.answers if a.version == version)
    start = shifted.timestamp()
    return rollback.timestamp() - start, last_seen - start, done.timestamp() - start


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "median_s": round(statistics.median(values), 2),
        "max_s": round(max(values), 2),
        "min_s": round(min(values), 2),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3, help="bad releases (detection)")
    p.add_argument("--rps", type=float, default=150.0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    started = time.monotonic()
    bed = start_bed()
    print(f"bed up in {bed.startup_seconds:.1f}s", file=sys.stderr)
    rows: list[dict[str, object]] = []
    try:
        bed.images.register(BAD_IMAGE, demo_image(error_rate=ERROR_RATE))
        kube = config.new_client_from_config(config_file=str(bed.kubeconfig))  # type: ignore[no-untyped-call]
        raw = Raw(kube)
        raw.create(
            "ServiceAccount", bed.argo_namespace, {"metadata": {"name": WORKFLOW_SERVICE_ACCOUNT}}
        )
        ns = namespace_for(raw, f"bench-{secrets.token_hex(3)}")
        app = install_demo_app(bed, raw, ns, router="gateway-api")
        kubeconfig = service_account_kubeconfig(bed, raw, ns)
        with BackgroundLoad(bed.gateway_url, app.host, rps=args.rps) as load:
            time.sleep(3.0)
            stable = "v1"
            for executor, version in (("local", "v2a"), ("argo", "v2b")):
                found = good_release(app, bed, kubeconfig, executor, stable, version)
                stable = version
                gaps = [s for _, s in found]
                approval = [s for name, s in found if name.startswith("approve-")]
                print(
                    f"{executor}: transitions " + ", ".join(f"{n} {s:.2f}s" for n, s in found),
                    file=sys.stderr,
                )
                rows.append({"where": f"{executor}: step transition", **_stats(gaps)})
                rows.append({"where": f"{executor}: into the approval step", **_stats(approval)})
            samples = []
            for i in range(args.runs):
                sample = bad_release(i, app, bed, kubeconfig, load, stable)
                samples.append(sample)
                print(
                    f"argo bad run {i + 1}: rollback event {sample[0]:.2f}s, users safe "
                    f"{sample[1]:.2f}s, rolled back {sample[2]:.2f}s",
                    file=sys.stderr,
                )
            rows.append(
                {"where": "argo: shift -> rollback event", **_stats([s[0] for s in samples])}
            )
            rows.append(
                {"where": "argo: shift -> last candidate answer", **_stats([s[1] for s in samples])}
            )
            rows.append({"where": "argo: shift -> rolled_back", **_stats([s[2] for s in samples])})
        kube.close()
    finally:
        bed.stop()
    if args.json:
        print(json.dumps({"runs": args.runs, "rps": args.rps, "rows": rows}, indent=2))
    else:
        print(f"{args.runs} bad runs, {args.rps:g} requests/s")
        print(f"{'':40} {'median':>8} {'max':>7} {'min':>7}")
        for r in rows:
            print(f"{r['where']:40} {r['median_s']:>7}s {r['max_s']:>6}s {r['min_s']:>6}s")
        print(f"(bench took {time.monotonic() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
