"""The traffic gate on simulated routing: false fails of a healthy candidate, and how soon it
catches one that loses a share of its requests unseen.

Each request goes to the candidate with probability ``weight`` (a per-request router); a
candidate that drops ``drop`` of its requests counts only the rest. The built-in gate
(tolerance 0.1, 99% per look, stricter under 1,000 expected requests on the smaller side) is
judged every 30s from the shift on, as the live loop does, with the counts since the
shift (up to its 15m window). Poisson arrivals at ``rps`` requests/s.

    .venv/bin/python bench/traffic_gate.py [--hours 200] [--runs 200] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gatekeeper.domain.verdicts import Verdict  # noqa: E402
from gates.kinds.traffic import judge_traffic  # noqa: E402
from gates.spec import default_gates  # noqa: E402

GATE = next(g for g in default_gates().gates if g.name == "traffic")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
TICK = 30  # seconds between verdicts
WINDOW = int(GATE.window)


def _poisson(rng: random.Random, mean: float) -> int:
    if mean > 50:  # normal approximation: fast, and close enough at this size
        return max(0, round(rng.gauss(mean, mean**0.5)))
    n, p, limit = 0, 1.0, pow(2.718281828459045, -mean)
    while True:
        p *= rng.random()
        if p <= limit:
            return n
        n += 1


def _binomial(rng: random.Random, n: int, p: float) -> int:
    if n * p * (1 - p) > 25:
        return min(n, max(0, round(rng.gauss(n * p, (n * p * (1 - p)) ** 0.5))))
    return sum(1 for _ in range(n) if rng.random() < p)


def simulate(
    rng: random.Random, rps: float, weight: int, drop: float, seconds: int
) -> tuple[int, int | None]:
    """(fails, seconds to the first fail) over ``seconds`` at one weight from the shift."""
    per_tick: list[tuple[int, int]] = []  # (candidate counted, stable) per 30s
    fails, first = 0, None
    for t in range(TICK, seconds + 1, TICK):
        n = _poisson(rng, rps * TICK)
        cand = _binomial(rng, n, weight / 100)
        counted = _binomial(rng, cand, 1 - drop)
        per_tick.append((counted, n - cand))
        recent = per_tick[-(WINDOW // TICK) :]
        x = sum(c for c, _ in recent)
        y = sum(s for _, s in recent)
        r = judge_traffic(GATE, weight, x, y, min(t, WINDOW), T0)
        if r.verdict is Verdict.FAIL:
            fails += 1
            first = first if first is not None else t
    return fails, first


def _time(seconds: int) -> str:
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, default=200, help="healthy hours per row")
    parser.add_argument("--runs", type=int, default=200, help="runs per detection row")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print("| healthy candidate | req/s | weight | hours | verdicts | fails |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for rps in (1, 10, 100):
        for weight in (5, 25, 50):
            fails = 0
            seconds = int(args.hours * 3600)
            f, _ = simulate(rng, rps, weight, 0.0, seconds)
            fails += f
            verdicts = seconds // TICK
            print(f"| every request counted | {rps} | {weight}% | {args.hours:g} | "
                  f"{verdicts:,} | {fails} |")  # fmt: skip
    print()
    print("| drops unseen | req/s | weight | caught within 30m | median | p90 |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for drop in (0.2, 0.1):
        for rps in (1, 10, 100):
            for weight in (5, 25, 50):
                times = []
                for _ in range(args.runs):
                    _, first = simulate(rng, rps, weight, drop, 1800)
                    if first is not None:
                        times.append(first)
                times.sort()
                caught = f"{len(times)}/{args.runs}"
                median = _time(times[len(times) // 2]) if times else "-"
                p90 = _time(times[min(len(times) - 1, int(len(times) * 0.9))]) if times else "-"
                print(f"| {drop:.0%} | {rps} | {weight}% | {caught} | {median} | {p90} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
