"""Detection-to-safety latency: a bad version's first traffic to 100% back on stable.

For each scrape interval (1 s and 5 s by default), a real Prometheus scrapes the
local target's versions; each run releases a version with 10% errors as a canary
(first step 25%) under the built-in gates, and measures from the moment the
candidate first receives traffic (the shift) to the moment the router sends all
traffic to stable again (the rollback), from the release's own audit trail.

    .venv/bin/python bench/detection.py [--runs 10] [--scrape 1,5] [--rps 400] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gatekeeper.domain.release import Phase, parse_release  # noqa: E402
from gatekeeper.engine.demo import service_command  # noqa: E402
from gatekeeper.engine.local_prometheus import free_port, local_prometheus  # noqa: E402
from gatekeeper.engine.runner import RunOptions, run_release  # noqa: E402
from gatekeeper.store.factory import open_store  # noqa: E402
from gatekeeper.targets.local.loadgen import LoadGenerator  # noqa: E402
from gatekeeper.targets.local.target import LocalProcessTarget  # noqa: E402


def one_run(i: int, scrape_s: float, base: Path, router_port: int, prom_url: str) -> float:
    state_dir = base / "target"
    db_url = f"sqlite:///{base / 'gk.db'}"
    version = f"bad{i}"
    spec = parse_release(
        {
            "app": "shop",
            "environment": f"bench{int(scrape_s)}",
            "version": version,
            "command": service_command(version, "--latency-ms", "5", "--error-rate", "0.10"),
            "stable": {"version": "v1", "command": service_command("v1", "--latency-ms", "5")},
            "strategy": {"type": "canary", "steps": [25, 100], "analysis": "10m"},
            "target": {"type": "local", "router_port": router_port, "state_dir": str(state_dir)},
            "hold_timeout": "10m",
        }
    )
    out = run_release(spec, RunOptions(prometheus_url=prom_url, db_url=db_url, state_dir=state_dir))
    if out.phase is not Phase.ROLLED_BACK:
        raise SystemExit(f"run {i}: expected a rollback, got {out.phase.value}: {out.reason}")
    store = open_store(db_url)
    try:
        events = store.events(out.release_id)
    finally:
        store.close()
    shifted = next(e.at for e in events if e.kind == "shift" and "-> 25%" in e.message)
    safe = next(e.at for e in events if e.kind == "phase" and e.message.startswith("rolled_back"))
    return (safe - shifted).total_seconds()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--scrape", default="1,5", help="scrape intervals in seconds")
    p.add_argument("--rps", type=float, default=400.0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    rows = []
    for scrape_s in (float(x) for x in args.scrape.split(",")):
        base = Path(tempfile.mkdtemp(prefix="gk-bench-detect-"))
        (base / "target").mkdir()
        router_port = free_port()
        with local_prometheus(
            scrape_interval=f"{scrape_s:g}s", file_sd=base / "target" / "file_sd.json"
        ) as prom:
            load = LoadGenerator(
                f"http://127.0.0.1:{router_port}/", rps=args.rps, duration=60 + args.runs * 60
            )
            load.start()
            samples = []
            try:
                for i in range(args.runs):
                    s = one_run(i, scrape_s, base, router_port, prom.url)
                    samples.append(s)
                    print(f"scrape {scrape_s:g}s run {i + 1}: {s:.2f}s", file=sys.stderr)
                    time.sleep(scrape_s)
            finally:
                load.stop()
                LocalProcessTarget("shop", base / "target", router_port=router_port).shutdown()
        rows.append(
            {
                "scrape_interval_s": scrape_s,
                "runs": len(samples),
                "median_s": round(statistics.median(samples), 2),
                "max_s": round(max(samples), 2),
                "min_s": round(min(samples), 2),
                "target_s": 2 * scrape_s + 1,
                "samples_s": [round(x, 2) for x in samples],
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'scrape':>7} {'runs':>5} {'median':>8} {'max':>7} {'aim (2 scrapes+1s)':>19}")
        for r in rows:
            print(
                f"{r['scrape_interval_s']:>6g}s {r['runs']:>5} {r['median_s']:>7}s "
                f"{r['max_s']:>6}s {r['target_s']:>18g}s"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
