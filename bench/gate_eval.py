"""Gate evaluation cost against a real Prometheus: ms per verdict and queries per tick.

Starts Debian's Prometheus scraping a synthetic exporter that serves the http-profile
metrics of N releases, then evaluates the default gate set for 1, 100 and 1,000
concurrent releases, batched (one PromQL query per gate per tick, `sum by (app,
version)`) and, for comparison, one release at a time.

    .venv/bin/python bench/gate_eval.py [--releases 1,100,1000] [--ticks 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gatekeeper.engine.local_prometheus import free_port, local_prometheus  # noqa: E402
from gates.evaluate import GateEvaluator, Release  # noqa: E402
from gates.prometheus import PrometheusProvider  # noqa: E402
from gates.provider import Subject  # noqa: E402
from gates.spec import default_gates  # noqa: E402

BUCKETS = (
    "0.005",
    "0.01",
    "0.025",
    "0.05",
    "0.075",
    "0.1",
    "0.25",
    "0.5",
    "0.75",
    "1.0",
    "2.5",
    "5.0",
    "7.5",
    "10.0",
    "+Inf",
)
T0 = time.time()


def exposition(apps: int) -> bytes:
    """Counters that grow with time: 20 req/s per app, 1% 5xx, 5% 4xx, latencies ~80 ms."""
    t = time.time() - T0
    lines = ["# TYPE http_requests_total counter"]
    for i in range(apps):
        n = 20.0 * t
        for code, share in (("200", 0.94), ("404", 0.05), ("500", 0.01)):
            lines.append(
                f'http_requests_total{{app="app-{i}",version="v2",code="{code}"}} {n * share:.3f}'
            )
    lines.append("# TYPE http_request_duration_seconds histogram")
    for i in range(apps):
        n = 20.0 * t
        for le in BUCKETS:
            share = 1.0 if le == "+Inf" or float(le) >= 0.1 else (0.3 if float(le) >= 0.05 else 0.0)
            lines.append(
                f'http_request_duration_seconds_bucket{{app="app-{i}",version="v2",le="{le}"}} '
                f"{n * share:.3f}"
            )
    return ("\n".join(lines) + "\n").encode()


def serve(apps: int) -> tuple[ThreadingHTTPServer, int]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            body = exposition(apps)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, port


def measure(
    evaluator: GateEvaluator,
    provider: PrometheusProvider,
    releases: list[Release],
    ticks: int,
    batched: bool,
) -> dict[str, float]:
    times, calls = [], []
    verdicts = 0
    for _ in range(ticks):
        before = provider.calls
        t = time.perf_counter()
        now = datetime.now(UTC)
        if batched:
            out = evaluator.evaluate_many(releases, now)
            verdicts = sum(len(v) for v in out.values())
        else:
            verdicts = sum(len(evaluator.evaluate(r, now)) for r in releases)
        times.append((time.perf_counter() - t) * 1000)
        calls.append(provider.calls - before)
    tick_ms = statistics.median(times)
    return {
        "tick_ms_median": round(tick_ms, 2),
        "tick_ms_max": round(max(times), 2),
        "verdicts_per_tick": verdicts,
        "ms_per_verdict": round(tick_ms / verdicts, 4),
        "queries_per_tick": statistics.median(calls),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--releases", default="1,100,1000")
    p.add_argument("--ticks", type=int, default=5)
    p.add_argument("--warmup", type=float, default=20.0, help="seconds of scraping first")
    p.add_argument(
        "--unbatched-max",
        type=int,
        default=100,
        help="largest release count also measured one release at a time",
    )
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    counts = [int(x) for x in args.releases.split(",")]
    server, port = serve(max(counts))
    rows = []
    with local_prometheus(scrape_interval="2s", targets={"bench": f"127.0.0.1:{port}"}) as prom:
        print(
            f"prometheus {prom.url}; scraping {max(counts)} releases; warming up {args.warmup:g}s",
            file=sys.stderr,
        )
        time.sleep(args.warmup)
        provider = PrometheusProvider(prom.url)
        evaluator = GateEvaluator(default_gates(), provider)
        started = datetime.now(UTC) - timedelta(hours=1)
        for n in counts:
            releases = [
                Release(candidate=Subject(f"app-{i}", "v2"), started=started) for i in range(n)
            ]
            for batched in (True, False):
                if not batched and n > args.unbatched_max:
                    continue
                row = {
                    "releases": n,
                    "mode": "batched" if batched else "per-release",
                    **measure(evaluator, provider, releases, args.ticks, batched),
                }
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
        provider.close()
    server.shutdown()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'releases':>8} {'mode':>12} {'tick ms':>9} {'ms/verdict':>11} {'queries':>8}")
        for r in rows:
            print(
                f"{r['releases']:>8} {r['mode']:>12} {r['tick_ms_median']:>9} "
                f"{r['ms_per_verdict']:>11} {r['queries_per_tick']:>8}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
