"""API latency of `gatekeeper serve`: submit and status at a steady request rate, with
1,000 releases in the store, on SQLite and (when a server is given) PostgreSQL.

The service runs as its own process (`python -m gatekeeper.cli serve`), as in production;
this process holds the controller lease, so the service only answers the API and starts
nothing. The store is filled first: 1,000 releases, each with 12 events and 24 gate
results (most promoted, some rolled back). Then requests go out open loop at --rate per
second for --seconds, alternating a submit (a new release, with an idempotency key) and a
status read (GET /api/v1/releases/{id}, the detail with steps, events and gate results)
of a random stored release. Latency is measured from each request's scheduled time, so
a server that falls behind shows its queueing too. The first --warmup seconds (default 5)
go out at the same rate and are shown on a row of their own: a fresh process's first
requests pay for lazy imports and statement caches. Prints p50, p95 and p99 in ms, and the
requests answered per second over the run (below --rate: the server could not keep up).

    .venv/bin/python bench/api_latency.py [--rate 100] [--seconds 30] [--store sqlite]
    scripts/with-postgres .venv/bin/python bench/api_latency.py   # PostgreSQL as well
"""

from __future__ import annotations

import argparse
import os
import random
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gatekeeper.domain.release import Phase, parse_release  # noqa: E402
from gatekeeper.domain.verdicts import GateResult, Verdict  # noqa: E402
from gatekeeper.engine.service.submission import queued_record  # noqa: E402
from gatekeeper.store.base import Event  # noqa: E402
from gatekeeper.store.sql import SqlStore, normalise_url  # noqa: E402

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
COMMAND = "python -m gatekeeper.targets.local.demo_service --port {port}"
LISTENING = re.compile(r"listening on (http://\S+)")


def spec(app: str, version: str) -> dict[str, object]:
    return {
        "app": app,
        "environment": "production",
        "version": version,
        "command": COMMAND,
        "stable": {"version": "v1", "command": COMMAND},
        "strategy": {"type": "canary", "steps": [10, 50, 100], "analysis": "5m"},
        "approvals": ["promote"],
    }


def fill(url: str, releases: int) -> list[str]:
    """``releases`` finished releases of 100 apps, with their events and gate results."""
    ids = []
    with SqlStore.open(url) as store:
        for n in range(releases):
            at = T0 + timedelta(minutes=n)
            parsed = parse_release(spec(f"app{n % 100}", f"v{n + 2}"))
            record = replace(queued_record(parsed, "ci-bot", at), created_at=at, updated_at=at)
            store.submit_release(record)
            rid = record.release_id
            for phase in (Phase.PENDING, Phase.RUNNING):
                store.set_phase(rid, phase, phase.value)
            end = Phase.ROLLED_BACK if n % 7 == 0 else Phase.PROMOTED
            store.set_phase(rid, end, end.value)
            for k in range(12):
                store.record_event(Event(rid, at + timedelta(seconds=k), "step", f"step {k}"))
            store.record_gate_results(
                rid,
                [
                    GateResult(
                        gate=f"gate{k % 6}", verdict=Verdict.PASS, reason=f"gate{k % 6}: ok",
                        at=at + timedelta(seconds=k), value=0.01, threshold=0.05,
                        window_s=120.0, requests=1000.0,
                    )
                    for k in range(24)
                ],
            )  # fmt: skip
            ids.append(rid)
        store.acquire_lease("gatekeeper-controller", "bench", datetime.now(UTC), 24 * 3600)
    return ids


@contextmanager
def serve(url: str, folder: Path, token: str) -> Iterator[str]:
    tokens = folder / "tokens"
    tokens.write_text(f"bench:ci,viewer:{token}\n")
    config = folder / "gk.yaml"
    config.write_text(yaml.safe_dump({
        "server": {"port": 0},
        "store": {"url": url},
        "controller": {"targets": ["local"]},
        "auth": {"tokens_file": str(tokens)},
    }))  # fmt: skip
    log = folder / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gatekeeper.cli", "serve", "--config", str(config),
             "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
            env={**os.environ, "GATEKEEPER_HOME": str(folder / "home")},
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (found := LISTENING.search(log.read_text(errors="replace"))):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gatekeeper serve did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield found.group(1)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def load(
    base: str, token: str, ids: list[str], rate: float, seconds: float, warmup: float = 0.0
) -> dict[str, list[float]]:
    """Open-loop requests at ``rate`` per second; latency in ms per operation. Requests
    of the first ``warmup`` seconds are sent at the same rate and counted apart (as
    ``warmup``): a process's first requests pay for its lazy imports and caches."""
    skipped = int(rate * warmup)
    total = skipped + int(rate * seconds)
    results: dict[str, list[float]] = {"submit": [], "status": [], "warmup": []}
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(total))
    headers = {"Authorization": f"Bearer {token}"}
    run = uuid.uuid4().hex[:6]
    # The clients first (each one builds its TLS context, tens of ms of CPU): made by the
    # workers as the clock runs, they delayed the first requests by hundreds of ms.
    clients = [httpx.Client(base_url=base, headers=headers, timeout=30) for _ in range(32)]
    start = time.monotonic() + 0.5

    def worker(http: httpx.Client) -> None:
        rng = random.Random()
        with http:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                due = start + i / rate
                time.sleep(max(0.0, due - time.monotonic()))
                if i % 2 == 0:
                    op = "submit"
                    r = http.post("/api/v1/releases", json=spec(f"bench{i % 50}", f"r{run}-{i}"),
                                  headers={"Idempotency-Key": f"{run}-{i}"})  # fmt: skip
                    ok = r.status_code == 201
                else:
                    op = "status"
                    r = http.get(f"/api/v1/releases/{rng.choice(ids)}")
                    ok = r.status_code == 200
                took = (time.monotonic() - due) * 1000
                with lock:
                    results[op if i >= skipped else "warmup"].append(took)
                    if not ok:
                        errors.append(f"{op}: {r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=worker, args=(http,)) for http in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, first: {errors[0]}")
    results["elapsed"] = [time.monotonic() - start - warmup]
    return results


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


@contextmanager
def database(kind: str, folder: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'gk.db'}"
        return
    from sqlalchemy import create_engine

    base = normalise_url(os.environ["GATEKEEPER_TEST_PG_URL"])
    schema = f"gk_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--releases", type=int, default=1000)
    parser.add_argument(
        "--warmup", type=float, default=5.0,
        help="seconds of requests at the same rate before the measured ones (shown apart)",
    )  # fmt: skip
    parser.add_argument(
        "--store", choices=["sqlite", "postgres"], action="append",
        help="the stores to measure (default: SQLite, and PostgreSQL under scripts/with-postgres)",
    )  # fmt: skip
    args = parser.parse_args()
    available = ["sqlite"] + (["postgres"] if os.environ.get("GATEKEEPER_TEST_PG_URL") else [])
    backends = args.store or available
    if "postgres" in backends and "postgres" not in available:
        parser.error("--store postgres: no GATEKEEPER_TEST_PG_URL (run in scripts/with-postgres)")
    print(f"{args.releases} releases stored; {args.rate:g} requests/s for {args.seconds:g}s, "
          "half submit, half status; ms from each request's scheduled time")  # fmt: skip
    print("| store | request | count | answered per s | p50 | p95 | p99 |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for kind in backends:
        with (
            tempfile.TemporaryDirectory(prefix="gk-bench-") as tmp,
            database(kind, Path(tmp)) as url,
        ):
            ids = fill(url, args.releases)
            token = "gkt_" + secrets.token_urlsafe(32)
            with serve(url, Path(tmp), token) as base:
                found = load(base, token, ids, args.rate, args.seconds, args.warmup)
            (elapsed,) = found.pop("elapsed")
            cold = found.pop("warmup")
            answered = sum(len(v) for v in found.values()) / elapsed
            if cold:
                found = {f"first {args.warmup:g}s (warm-up)": cold, **found}
            for op, values in found.items():
                p50, p95, p99 = (percentile(values, q) for q in (0.5, 0.95, 0.99))
                print(f"| {kind} | {op} | {len(values)} | {answered:.0f} | {p50:.1f} | {p95:.1f} "
                      f"| {p99:.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
