"""Detection-to-safety on the Kubernetes test bed: a bad version's first traffic through the
Gateway to users back on stable.

The bed (tests/e2e/testbed: a real API server, Traefik as the Gateway, Prometheus scraping
the pods every second through pod discovery) runs the demo app `shop` at v1 (2 replicas).
Each run releases a version whose image answers 10% of requests with 500, as a canary
(first step 25%, a 10m analysis) under the default gates, uncompressed, while a load
generator sends `--rps` requests a second through the Gateway. From the release's own
events it measures the time from the shift to 25% to:

- the rollback's event (the abort gate's fail: detection);
- the last answer the load generator got from the candidate (users safe);
- the rolled_back phase (traffic back, drain (5 s), candidate deleted, objects restored).

Beside it, unless `--no-local`, the same release on the local target (bench/detection.py's
run, Prometheus scraping every second, the same load), measured to its rolled_back phase.

    .venv/bin/python bench/kubernetes_detection.py [--runs 5] [--rps 200] [--no-local]
        [--json]
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from kubernetes import config  # noqa: E402

from gatekeeper.domain.release import Phase, parse_release  # noqa: E402
from tests.e2e.kubernetes_release import (  # noqa: E402
    DemoApp,
    events,
    install_demo_app,
    namespace_for,
    run,
)
from tests.e2e.kubernetes_target import Raw, service_account_kubeconfig  # noqa: E402
from tests.e2e.testbed import ClusterBed, start_bed  # noqa: E402
from tests.e2e.testbed.images import demo_image  # noqa: E402
from tests.e2e.testbed.traffic import BackgroundLoad  # noqa: E402

BAD_IMAGE = "demo:bench-10pct"
ERROR_RATE = 0.10


@dataclass(frozen=True)
class Sample:
    detected_s: float  # shift -> rollback event
    safe_s: float  # shift -> the load generator's last answer from the candidate
    rolled_back_s: float  # shift -> rolled_back phase


def bed_run(
    i: int, bed: ClusterBed, app: DemoApp, kubeconfig: Path, load: BackgroundLoad
) -> Sample:
    version = f"bad{i}"
    work = Path(tempfile.mkdtemp(prefix="gk-bench-k8s-"))
    spec = parse_release(
        {
            "app": "shop",
            "environment": "bench",
            "version": version,
            "image": BAD_IMAGE,
            "stable": {"version": "v1", "image": "demo:v1"},
            "strategy": {"type": "canary", "steps": [25, 100], "analysis": "10m"},
            "target": {
                "type": "kubernetes",
                "namespace": app.namespace,
                "router": "gateway-api",
                "progress_deadline": "60s",
            },
            "hold_timeout": "10m",
        }
    )
    out = run(spec, bed, kubeconfig, work)
    if out.phase is not Phase.ROLLED_BACK:
        raise SystemExit(f"run {i}: expected a rollback, got {out.phase.value}: {out.reason}")
    timeline = events(work, out.release_id)
    shifted = next(e.at for e in timeline if e.kind == "shift" and "-> 25%" in e.message)
    rollback = next(e.at for e in timeline if e.kind == "rollback")
    done = next(e.at for e in timeline if e.kind == "phase" and "rolled_back" in e.message)
    time.sleep(1.0)  # the candidate's last answers come in
    last_seen = max(a.at for a in load.answers if a.version == version)
    start = shifted.timestamp()
    return Sample(
        detected_s=rollback.timestamp() - start,
        safe_s=last_seen - start,
        rolled_back_s=done.timestamp() - start,
    )


def bed_runs(runs: int, rps: float) -> list[Sample]:
    bed = start_bed(with_argo=False)
    print(f"bed up in {bed.startup_seconds:.1f}s", file=sys.stderr)
    try:
        bed.images.register(BAD_IMAGE, demo_image(error_rate=ERROR_RATE))
        kube = config.new_client_from_config(config_file=str(bed.kubeconfig))  # type: ignore[no-untyped-call]
        raw = Raw(kube)
        ns = namespace_for(raw, f"bench-{secrets.token_hex(3)}")
        app = install_demo_app(bed, raw, ns, router="gateway-api")
        kubeconfig = service_account_kubeconfig(bed, raw, ns)
        samples = []
        with BackgroundLoad(bed.gateway_url, app.host, rps=rps) as load:
            time.sleep(3.0)  # stable's request series before the first release
            for i in range(runs):
                sample = bed_run(i, bed, app, kubeconfig, load)
                samples.append(sample)
                print(
                    f"bed run {i + 1}: detected {sample.detected_s:.2f}s, users safe "
                    f"{sample.safe_s:.2f}s, rolled back {sample.rolled_back_s:.2f}s",
                    file=sys.stderr,
                )
        kube.close()
        return samples
    finally:
        bed.stop()


def local_runs(runs: int, rps: float) -> list[float]:
    """bench/detection.py's run at a 1 s scrape: shift -> rolled_back phase."""
    import detection

    from gatekeeper.engine.local_prometheus import free_port, local_prometheus
    from gatekeeper.targets.local.loadgen import LoadGenerator
    from gatekeeper.targets.local.target import LocalProcessTarget

    base = Path(tempfile.mkdtemp(prefix="gk-bench-detect-"))
    (base / "target").mkdir()
    router_port = free_port()
    samples = []
    with local_prometheus(scrape_interval="1s", file_sd=base / "target" / "file_sd.json") as prom:
        load = LoadGenerator(f"http://127.0.0.1:{router_port}/", rps=rps, duration=60 + runs * 60)
        load.start()
        try:
            for i in range(runs):
                s = detection.one_run(i, 1.0, base, router_port, prom.url)
                samples.append(s)
                print(f"local run {i + 1}: rolled back {s:.2f}s", file=sys.stderr)
                time.sleep(1.0)
        finally:
            load.stop()
            LocalProcessTarget("shop", base / "target", router_port=router_port).shutdown()
    return samples


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "median_s": round(statistics.median(values), 2),
        "max_s": round(max(values), 2),
        "min_s": round(min(values), 2),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--rps", type=float, default=200.0)
    p.add_argument("--no-local", action="store_true", help="skip the local target's figure")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    started = time.monotonic()
    bed = bed_runs(args.runs, args.rps)
    rows = [
        {"where": "bed: shift -> rollback event", **_stats([s.detected_s for s in bed])},
        {"where": "bed: shift -> last candidate answer", **_stats([s.safe_s for s in bed])},
        {"where": "bed: shift -> rolled_back", **_stats([s.rolled_back_s for s in bed])},
    ]
    if not args.no_local:
        rows.append(
            {"where": "local: shift -> rolled_back", **_stats(local_runs(args.runs, args.rps))}
        )
    if args.json:
        print(json.dumps({"runs": args.runs, "rps": args.rps, "rows": rows}, indent=2))
    else:
        print(f"{args.runs} runs, {args.rps:g} requests/s, 10% 5xx candidate at 25%, scrape 1s")
        print(f"{'':38} {'median':>8} {'max':>7} {'min':>7}")
        for r in rows:
            print(f"{r['where']:38} {r['median_s']:>7}s {r['max_s']:>6}s {r['min_s']:>6}s")
        print(f"(bench took {time.monotonic() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
