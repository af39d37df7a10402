"""The local target: versions run as processes behind a weighted router on loopback.

Modules:
    target        LocalProcessTarget, the Target protocol over local processes
    router        the weighted reverse proxy (its own process, so it outlives a controller)
    demo_service  a small HTTP service exporting the ``http`` metric profile
    loadgen       a bounded, loopback-only load generator
    file_sd       Prometheus file_sd output for the versions the target runs
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .target import LocalProcessTarget, fill_command

__all__ = ["LocalProcessTarget", "fill_command"]


def __getattr__(name: str) -> object:
    # Imported on first use, so `python -m gatekeeper.targets.local.router` does not load
    # the router module twice.
    if name in __all__:
        from . import target

        return getattr(target, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
