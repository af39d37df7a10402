"""How long the CLI takes to start: `--help`, `plan` and `history`, against a bare interpreter.

Each command runs as a subprocess, the way a user or a CI job runs it: the `gatekeeper`
script next to this interpreter (else `python -m gatekeeper.cli`). `history` reads a
store in a temporary GATEKEEPER_HOME holding a few releases, created (and migrated)
before the timing starts. One untimed round first (bytecode caches, the page cache), then
the commands take turns round by round, so a change of machine load weighs on each
alike. Prints the medians in ms and as a ratio to `python -c pass` as a Markdown table:
wall time, what a user waits, and CPU time (user + system), which a busy machine
inflates less.

    .venv/bin/python bench/cli_start.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gatekeeper.domain.release import Phase  # noqa: E402
from gatekeeper.store.base import ReleaseRecord  # noqa: E402
from gatekeeper.store.factory import open_store  # noqa: E402

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
PHASES = (Phase.PROMOTED, Phase.ROLLED_BACK, Phase.PROMOTED, Phase.ABORTED, Phase.PROMOTED)


def gatekeeper_command() -> list[str]:
    script = Path(sys.executable).parent / "gatekeeper"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gatekeeper.cli"]


def fill_store(home: Path) -> None:
    """A store with a few finished releases, at the head of the migrations."""
    store = open_store(f"sqlite:///{home / 'gatekeeper.db'}")
    try:
        for i, phase in enumerate(PHASES):
            at = T0 + timedelta(hours=i)
            release_id = f"shop-production-v{i + 2}"
            store.create_release(
                ReleaseRecord(
                    release_id=release_id,
                    app="shop",
                    environment="production",
                    version=f"v{i + 2}",
                    stable_version=f"v{i + 1}",
                    strategy="canary",
                    expedited=False,
                    spec={},
                    plan={},
                    phase=phase,
                    reason=f"{phase.value} at step {i}",
                    created_at=at,
                    updated_at=at,
                )
            )
    finally:
        store.close()


def _children_cpu_s() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def time_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU time of one run in ms; a failing run stops the benchmark."""
    cpu = _children_cpu_s()
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True)
    wall = (time.perf_counter() - start) * 1000
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr}")
    return wall, (_children_cpu_s() - cpu) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs of each command")
    args = parser.parse_args()

    gatekeeper = gatekeeper_command()
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "gatekeeper --help": [*gatekeeper, "--help"],
        "gatekeeper plan examples/canary.yaml": [*gatekeeper, "plan", "examples/canary.yaml"],
        f"gatekeeper history ({len(PHASES)} releases)": [*gatekeeper, "history"],
    }
    with tempfile.TemporaryDirectory(prefix="gatekeeper-bench-") as tmp:
        home = Path(tmp)
        fill_store(home)
        env = {**os.environ, "GATEKEEPER_HOME": str(home), "COLUMNS": "100"}
        env.pop("GATEKEEPER_DB_URL", None)
        for argv in cases.values():
            time_once(argv, env)
        walls: dict[str, list[float]] = {name: [] for name in cases}
        cpus: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, argv in cases.items():
                wall, cpu = time_once(argv, env)
                walls[name].append(wall)
                cpus[name].append(cpu)

    wall_ms = {name: statistics.median(runs) for name, runs in walls.items()}
    cpu_ms = {name: statistics.median(runs) for name, runs in cpus.items()}
    bare_wall, bare_cpu = wall_ms["python -c pass"], cpu_ms["python -c pass"]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"medians of {args.runs} runs each; {sys.executable}; load average {load}")
    print()
    print("| command | wall ms | x bare | CPU ms | x bare |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in cases:
        wall, cpu = wall_ms[name], cpu_ms[name]
        print(
            f"| `{name}` | {wall:.0f} | {wall / bare_wall:.1f} | {cpu:.0f} | {cpu / bare_cpu:.1f} |"
        )


if __name__ == "__main__":
    main()
