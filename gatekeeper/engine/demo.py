"""`gatekeeper demo`: one good release promoted, one bad release rolled back, on this machine.

It runs the demo service behind the local router, a load generator, and a real
Prometheus when one is installed (the built-in scraper otherwise), time-compressed
so both releases end within three minutes.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gatekeeper.domain.release import Phase, ReleaseSpec, parse_release

from .executor import Listener, Outcome
from .local_prometheus import free_port, local_prometheus, prometheus_binary
from .runner import RunOptions, run_release

TIME_SCALE = 30.0  # 2m windows become 4s, a 10m analysis 20s
LOAD_RPS = 200.0
DEMO_GATES: dict[str, Any] = {
    "profile": "http",
    "gates": [
        {
            "name": "abort",
            "metric": "error_ratio",
            "threshold": 0.05,
            "window": "2m",
            "interval": "10s",
            "guard": True,
        },
        {
            "name": "sustained",
            "metric": "error_ratio",
            "threshold": 0.02,
            "window": "5m",
            "sustained_for": "15m",
            "confirm_window": "15m",
            "interval": "30s",
        },
        {
            "name": "latency",
            "metric": "latency",
            "quantile": 0.95,
            "threshold": 0.5,
            "window": "5m",
            "interval": "30s",
        },
    ],
}


def service_command(version: str, *flags: str) -> str:
    parts = [
        sys.executable,
        "-m",
        "gatekeeper.targets.local.demo_service",
        "--app",
        "shop",
        "--version",
        version,
        "--port",
        "{port}",
        *flags,
    ]
    return " ".join(shlex.quote(p) if p != "{port}" else p for p in parts)


def demo_specs(router_port: int, state_dir: Path) -> tuple[ReleaseSpec, ReleaseSpec]:
    target = {"type": "local", "router_port": router_port, "state_dir": str(state_dir)}
    common: dict[str, Any] = {
        "app": "shop",
        "environment": "demo",
        "gates": DEMO_GATES,
        "target": target,
        "time_scale": TIME_SCALE,
        "hold_timeout": "30m",
    }
    good = parse_release(
        {
            **common,
            "version": "v2",
            "command": service_command("v2", "--latency-ms", "20"),
            "stable": {"version": "v1", "command": service_command("v1", "--latency-ms", "20")},
            "strategy": {"type": "canary", "steps": [25, 50, 100], "analysis": "10m"},
        },
        source="demo good release",
    )
    bad = parse_release(
        {
            **common,
            "version": "v3",
            "command": service_command("v3", "--latency-ms", "20", "--error-rate", "0.10"),
            "stable": {"version": "v2", "command": service_command("v2", "--latency-ms", "20")},
            "strategy": {"type": "canary", "steps": [25, 50, 100], "analysis": "10m"},
        },
        source="demo bad release",
    )
    return good, bad


@dataclass(frozen=True)
class DemoRun:
    name: str
    expected: Phase
    outcome: Outcome
    seconds: float

    @property
    def as_expected(self) -> bool:
        return self.outcome.phase is self.expected


@dataclass(frozen=True)
class DemoResult:
    metrics: str  # "prometheus" or "built-in scraper"
    runs: list[DemoRun]

    @property
    def ok(self) -> bool:
        return all(r.as_expected for r in self.runs)


@contextlib.contextmanager
def _metrics(use_prometheus: bool, sd_file: Path) -> Iterator[str | None]:
    if not use_prometheus:
        yield None
        return
    with local_prometheus(scrape_interval="1s", file_sd=sd_file) as prom:
        yield prom.url


def run_demo(
    *,
    listener_for: Callable[[str], contextlib.AbstractContextManager[Listener]],
    use_prometheus: bool | None = None,
    say: Callable[[str], None] = print,
    workdir: Path | None = None,
) -> DemoResult:
    from gatekeeper.targets.local.loadgen import LoadGenerator
    from gatekeeper.targets.local.target import LocalProcessTarget

    if use_prometheus is None:
        use_prometheus = prometheus_binary() is not None
    own = workdir is None
    base = workdir or Path(tempfile.mkdtemp(prefix="gatekeeper-demo-"))
    state_dir = base / "target"
    router_port = free_port()
    good, bad = demo_specs(router_port, state_dir)
    db_url = f"sqlite:///{base / 'gatekeeper.db'}"
    metrics_name = "prometheus" if use_prometheus else "built-in scraper"
    say(
        f"demo: metrics from {metrics_name}; router on 127.0.0.1:{router_port}; "
        f"time compressed {TIME_SCALE:g}x; load {LOAD_RPS:g} requests/s"
    )
    runs: list[DemoRun] = []
    load = LoadGenerator(f"http://127.0.0.1:{router_port}/", rps=LOAD_RPS, duration=240)
    try:
        with _metrics(use_prometheus, state_dir / "file_sd.json") as prom_url:
            load.start()
            for name, spec, expected in (
                ("good release", good, Phase.PROMOTED),
                ("bad release", bad, Phase.ROLLED_BACK),
            ):
                say(
                    f"demo: {name}: {spec.app} {spec.stable.version} -> {spec.version} "
                    f"({spec.strategy.type})"
                )
                t0 = time.monotonic()
                with listener_for(f"{name} {spec.version}") as listener:
                    outcome = run_release(
                        spec,
                        RunOptions(
                            prometheus_url=prom_url,
                            db_url=db_url,
                            listener=listener,
                            state_dir=state_dir,
                        ),
                    )
                runs.append(DemoRun(name, expected, outcome, time.monotonic() - t0))
                say(f"demo: {name}: {outcome.phase.value}: {outcome.reason}")
    finally:
        load.stop()
        with contextlib.suppress(Exception):
            LocalProcessTarget("shop", state_dir, router_port=router_port).shutdown()
        if own:
            shutil.rmtree(base, ignore_errors=True)
    return DemoResult(metrics=metrics_name, runs=runs)
