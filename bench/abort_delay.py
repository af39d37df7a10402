"""How fast the abort gate fails a bad candidate, and how often it fails a healthy one.

Simulated candidate traffic, the real GateEvaluator with the built-in abort gate. Each
second's requests and 5xx are Poisson draws (5xx and the rest drawn apart, so a
second's 5xx are binomial given its requests), kept as prefix sums, so any window is two
subtractions. A fake Provider (our own protocol, gates/provider.py) answers ``counts`` and
``counts_range`` from them, as a Prometheus scraping every second would.

Detection: the release starts at t=0 with a healthy minute at 0.5% 5xx, then X% 5xx; the
delay is from that onset to the first ``fail``. 20 seeded runs per cell, X in 6, 8, 10
and 20%, at 1, 10 and 100 candidate requests/s; a run that has not failed 30 minutes
after the onset counts as not failed. The "window only" column is the same gate with
``evidence_window: 0`` (the rule before evidence accumulated).

Noise: a healthy candidate at 1% 5xx and 1 request/s for 1,000 hours (20 runs of 50h),
one at the sustained gate's threshold, 2% at 1 request/s, and one just under the abort
threshold, 4% at 10 requests/s, for 100 hours each; "aborts" counts fails more than a
window (2m) apart: each would have rolled a release back.

Significance: a breach fails only when the one-sided Wilson bound at the sequential
boundary is past the threshold (gates/verdict.py ``sequential_bound``): the gate's 95%
from 250 requests on, stricter in fewer requests; the first table shows it.

Seeds: detection runs use seeds ``base .. base + runs - 1``, noise runs ``base + 1000 ..``;
``--seed-base`` (default 0) draws an independent set.

Cadence: the gate's interval is 250ms, the simulated counts change once a second, and
every window and slice is cut at whole seconds: the four evaluations in a second read
the same counts and say the same, so evaluating once a second gives the same verdicts
and the same first fail, at a quarter of the cost.

    .venv/bin/python bench/abort_delay.py [--runs 20] [--healthy-hours 1000]
        [--near-hours 100] [--seed-base 0] [--jobs N] [--json]
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import os
import random
import statistics
import sys
import time
from array import array
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gatekeeper.domain.errors import ProviderError  # noqa: E402
from gatekeeper.domain.verdicts import Verdict  # noqa: E402
from gates.evaluate import GateEvaluator, Release  # noqa: E402
from gates.profiles import Profile  # noqa: E402
from gates.provider import Buckets, Counts, LabeledValue, Provider, Subject  # noqa: E402
from gates.spec import GateSet, GateSpec, default_gates  # noqa: E402
from gates.verdict import (  # noqa: E402
    SEQUENTIAL_REQUESTS,
    fmt_pct,
    sequential_bound,
    wilson_bound,
)

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
CANDIDATE = Subject("shop", "v2")
ONSET_S = 60
HEALTHY_RATIO = 0.005
CAP_S = 30 * 60
BAD_RATIOS = (0.06, 0.08, 0.10, 0.20)
RATES = (1.0, 10.0, 100.0)
BOUNDARY_REQUESTS = (100, 108, 120, 150, 200, 250, 1200, 2400)


class Poisson:
    """Poisson draws by inverting a precomputed CDF: one uniform and a bisection each."""

    def __init__(self, mean: float) -> None:
        self.cdf: list[float] = []
        pmf, total, k = math.exp(-mean), 0.0, 0
        while total < 1 - 1e-15 and (k <= mean or pmf > 0):
            total += pmf
            self.cdf.append(total)
            k += 1
            pmf *= mean / k
        self.mean = mean

    def draw(self, rng: random.Random) -> int:
        return bisect.bisect_right(self.cdf, rng.random()) if self.mean > 0 else 0


@dataclass
class Stream:
    """Per-second traffic as prefix sums: ``requests[i]`` counts seconds 1..i."""

    requests: array[int]
    errors: array[int]

    @classmethod
    def simulate(cls, seed: int, seconds: int, rps: float, ratio: Callable[[int], float]) -> Stream:
        rng = random.Random(seed)
        tables: dict[float, tuple[Poisson, Poisson]] = {}
        req, err = array("q", [0]), array("q", [0])
        n = e = 0
        for i in range(1, seconds + 1):
            p = ratio(i)
            if p not in tables:
                tables[p] = (Poisson(rps * (1 - p)), Poisson(rps * p))
            ok, bad = tables[p]
            fails = bad.draw(rng)
            n += ok.draw(rng) + fails
            e += fails
            req.append(n)
            err.append(e)
        return cls(req, err)


class SimProvider:
    """The Provider protocol over simulated streams; windows are cut at whole seconds."""

    name = "sim"

    def __init__(self, streams: dict[Subject, Stream]) -> None:
        self.streams = streams

    def scrape_interval(self) -> float | None:
        return 1.0

    def scrape_interval_for(self, profile: Profile, subject: Subject) -> float | None:
        return 1.0

    def scraped(self, endpoints: Sequence[str], at: datetime) -> dict[str, bool]:
        return {e: True for e in endpoints}

    def _second(self, t: datetime, last: int) -> int:
        return min(max((t - T0) // timedelta(seconds=1), 0), last)

    def _counts(self, s: Stream, window_s: float, at: datetime) -> Counts | None:
        last = len(s.requests) - 1
        b = self._second(at, last)
        if b <= 0:
            return None  # no series before the first second of traffic
        a = self._second(at - timedelta(seconds=window_s), last)
        return Counts(float(s.requests[b] - s.requests[a]), float(s.errors[b] - s.errors[a]))

    def counts(
        self, profile: Profile, subjects: Sequence[Subject], window_s: float, at: datetime
    ) -> dict[Subject, Counts]:
        out = {}
        for subject in subjects:
            stream = self.streams.get(subject)
            c = self._counts(stream, window_s, at) if stream else None
            if c is not None:
                out[subject] = c
        return out

    def counts_range(
        self,
        profile: Profile,
        subjects: Sequence[Subject],
        window_s: float,
        start: datetime,
        end: datetime,
        step_s: float,
    ) -> dict[Subject, list[tuple[datetime, Counts]]]:
        step = timedelta(seconds=step_s)
        n = round((end - start) / step)
        times = [start + k * step for k in range(n + 1)]
        out: dict[Subject, list[tuple[datetime, Counts]]] = {}
        for subject in subjects:
            stream = self.streams.get(subject)
            for t in times:
                c = self._counts(stream, window_s, t) if stream else None
                if c is not None:
                    out.setdefault(subject, []).append((t, c))
        return out

    def buckets(
        self, profile: Profile, subjects: Sequence[Subject], window_s: float, at: datetime
    ) -> dict[Subject, Buckets]:
        return {}  # only the abort gate is evaluated: it reads counts

    def query(self, promql: str, at: datetime) -> list[LabeledValue]:
        raise ProviderError("the simulated provider answers no PromQL")


def _provider(p: SimProvider) -> Provider:
    return p  # mypy checks that the simulation implements the protocol


def abort_gate(accumulate: bool) -> GateSpec:
    abort = next(g for g in default_gates().gates if g.name == "abort")
    return abort if accumulate else abort.model_copy(update={"evidence_window": 0.0})


def first_fail(seed: int, rps: float, bad: float, accumulate: bool) -> float | None:
    """Seconds from the onset of ``bad`` 5xx to the abort gate's first fail; None: none."""
    stream = Stream.simulate(
        seed, ONSET_S + CAP_S, rps, lambda i: HEALTHY_RATIO if i <= ONSET_S else bad
    )
    ev = GateEvaluator(GateSet(gates=(abort_gate(accumulate),)), SimProvider({CANDIDATE: stream}))
    release = Release(candidate=CANDIDATE, started=T0)
    for k in range(1, ONSET_S + CAP_S + 1):
        [r] = ev.evaluate(release, T0 + timedelta(seconds=k))
        if r.verdict is Verdict.FAIL:
            return float(k - ONSET_S)
    return None


def noise(seed: int, rps: float, ratio: float, hours: float, accumulate: bool) -> dict[str, int]:
    """Aborts, fail seconds and warn seconds of a steady candidate.

    A fail more than the gate's window after the previous one is a new abort (the first
    would have rolled the release back; later fails of the same breach are the same abort).
    """
    seconds = round(hours * 3600)
    stream = Stream.simulate(seed, seconds, rps, lambda i: ratio)
    gate = abort_gate(accumulate)
    ev = GateEvaluator(GateSet(gates=(gate,)), SimProvider({CANDIDATE: stream}))
    release = Release(candidate=CANDIDATE, started=T0)
    aborts = fails = warns = 0
    last_fail = -math.inf
    for k in range(1, seconds + 1):
        [r] = ev.evaluate(release, T0 + timedelta(seconds=k))
        if r.verdict is Verdict.FAIL:
            aborts += k - last_fail > gate.window
            fails += 1
            last_fail = k
        warns += r.verdict is Verdict.WARN
    return {"aborts": aborts, "fail_s": fails, "warn_s": warns}


def boundary() -> list[dict[str, float | int]]:
    """The abort gate's boundary at some request counts: the confidence asked of one look
    and the fewest 5xx that fail, against a fixed Wilson bound at the gate's confidence."""
    gate = abort_gate(True)
    assert gate.threshold is not None

    def fewest(n: int, sequential: bool) -> int:
        assert gate.threshold is not None
        for k in range(math.floor(gate.threshold * n) + 1, n + 1):
            bound = (
                sequential_bound(k, n, gate.confidence, upper=False).bound
                if sequential
                else wilson_bound(k, n, gate.confidence, upper=False)
            )
            if bound > gate.threshold:
                return k
        return n + 1

    return [
        {
            "requests": n,
            "level": sequential_bound(0, n, gate.confidence, upper=False).level,
            "fewest_5xx": fewest(n, True),
            "fixed_fewest_5xx": fewest(n, False),
        }
        for n in BOUNDARY_REQUESTS
    ]


def _fmt(s: float | None) -> str:
    if s is None:
        return "none"
    return f"{s:.0f}s" if s < 120 else f"{int(s // 60)}m{int(s % 60):02d}s"


def _median(xs: list[float | None]) -> float | None:
    """Median with runs that never failed counted as later than any that did."""
    m = statistics.median(x if x is not None else math.inf for x in xs)
    return None if math.isinf(m) else m


def _quantile(xs: list[float | None], q: float) -> float | None:
    ordered = sorted(x if x is not None else math.inf for x in xs)
    v = ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]
    return None if math.isinf(v) else v


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--healthy-hours", type=float, default=1000.0)
    p.add_argument("--near-hours", type=float, default=100.0)
    p.add_argument("--seed-base", type=int, default=0)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    began = time.monotonic()
    cells = [(bad, rps) for bad in BAD_RATIOS for rps in RATES]
    steady = [
        ("healthy", 1.0, 0.01, args.healthy_hours),
        ("at the sustained gate's 2%", 1.0, 0.02, args.near_hours),
        ("just under the threshold", 10.0, 0.04, args.near_hours),
    ]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        delays = {
            (bad, rps, acc): [
                pool.submit(first_fail, args.seed_base + seed, rps, bad, acc)
                for seed in range(args.runs)
            ]
            for bad, rps in cells
            for acc in (True, False)
        }
        noisy = {
            (name, acc): [
                pool.submit(noise, args.seed_base + 1000 + seed, rps, ratio, hours / args.runs, acc)
                for seed in range(args.runs)
            ]
            for name, rps, ratio, hours in steady
            for acc in (True, False)
        }
        got = {k: [f.result() for f in fs] for k, fs in delays.items()}
        tallies = {
            k: {key: sum(f.result()[key] for f in fs) for key in ("aborts", "fail_s", "warn_s")}
            for k, fs in noisy.items()
        }
    rows = []
    for bad, rps in cells:
        xs, before = got[(bad, rps, True)], got[(bad, rps, False)]
        rows.append(
            {
                "errors": bad,
                "rps": rps,
                "runs": args.runs,
                "median_s": _median(xs),
                "p90_s": _quantile(xs, 0.9),
                "max_s": None if None in xs else max(x for x in xs if x is not None),
                "failed": sum(x is not None for x in xs),
                "window_only_median_s": _median(before),
                "window_only_failed": sum(x is not None for x in before),
            }
        )
    noise_rows = [
        {
            "candidate": name,
            "errors": ratio,
            "rps": rps,
            "hours": hours,
            **{f"{k}": v for k, v in tallies[(name, True)].items()},
            "window_only_aborts": tallies[(name, False)]["aborts"],
        }
        for name, rps, ratio, hours in steady
    ]
    bounds = boundary()
    elapsed = time.monotonic() - began
    if args.json:
        print(
            json.dumps(
                {
                    "boundary": bounds,
                    "seed_base": args.seed_base,
                    "detection": rows,
                    "noise": noise_rows,
                    "elapsed_s": elapsed,
                },
                indent=2,
            )
        )
        return 0
    gate = abort_gate(True)
    print(
        f"Boundary: a breach fails when the one-sided Wilson bound is past "
        f"{fmt_pct(gate.threshold or 0)}, at {fmt_pct(gate.confidence)} from "
        f"{SEQUENTIAL_REQUESTS} requests on and at z x sqrt({SEQUENTIAL_REQUESTS} / requests) "
        "below (sequential).\n"
    )
    print("| requests | " + " | ".join(f"{b['requests']:,}" for b in bounds) + " |")
    print("| --- |" + " ---: |" * len(bounds))
    print("| confidence per look | " + " | ".join(fmt_pct(b["level"]) for b in bounds) + " |")
    print("| fewest 5xx that fail | " + " | ".join(f"{b['fewest_5xx']}" for b in bounds) + " |")
    print(
        f"| at a fixed {fmt_pct(gate.confidence)} | "
        + " | ".join(f"{b['fixed_fewest_5xx']}" for b in bounds)
        + " |\n"
    )
    print(
        f"Onset -> first `fail` of the abort gate, {args.runs} seeded runs per row, seeds from "
        f"{args.seed_base} (none: not failed within {CAP_S // 60}m of the onset).\n"
    )
    print("| 5xx | req/s | median | p90 | max | failed | window only: median (failed) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['errors']:.0%} | {r['rps']:g} | {_fmt(r['median_s'])} | "
            f"{_fmt(r['p90_s'])} | {_fmt(r['max_s'])} | {r['failed']}/{r['runs']} | "
            f"{_fmt(r['window_only_median_s'])} ({r['window_only_failed']}/{r['runs']}) |"
        )
    print(
        "\n| steady candidate | 5xx | req/s | hours | aborts | fail s | warn s "
        "| window only: aborts |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in noise_rows:
        print(
            f"| {n['candidate']} | {n['errors']:.0%} | {n['rps']:g} | {n['hours']:g} | "
            f"{n['aborts']} | {n['fail_s']} | {n['warn_s']:,} | {n['window_only_aborts']} |"
        )
    print(f"\n({elapsed:.0f}s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
