"""The local target: versions run as processes behind a weighted router on loopback.

Modules:
    target         LocalProcessTarget, the Target protocol over local processes
    commands       command templates: filling {port}, {app}, {version}, {python}
    state          the state file (target.json): pydantic models, written atomically
    processes      starting, readiness, adoption and stopping of processes; no zombies
    router_client  the router's admin API and state file; starting the router
    retirement     delayed stops of old versions
    clock          wall-clock time, injectable
    router         the weighted reverse proxy (its own process, so it outlives a controller)
    demo_service   a small HTTP service exporting the ``http`` metric profile
    loadgen        a bounded, loopback-only load generator
    file_sd        Prometheus file_sd output for the versions the target runs
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .commands import fill_command
    from .target import LocalProcessTarget

__all__ = ["LocalProcessTarget", "fill_command"]

_HOMES = {"LocalProcessTarget": ".target", "fill_command": ".commands"}


def __getattr__(name: str) -> object:
    # Imported on first use, so `python -m gatekeeper.targets.local.router` does not load
    # the router module twice.
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(home, __name__), name)
