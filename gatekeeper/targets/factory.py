"""The workloads of a release, built from its spec: the one place a target is made."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gatekeeper.domain.errors import InvalidInput
from gatekeeper.domain.release import LocalTarget, ReleaseSpec

if TYPE_CHECKING:
    from .local.target import LocalProcessTarget


def workloads_for(spec: ReleaseSpec, state_dir: Path) -> LocalProcessTarget:
    """The spec's workloads (for the local target, its folder of processes and router)."""
    if not isinstance(spec.target, LocalTarget):
        raise InvalidInput(
            f"target.type {spec.target.type!r}: only the local target runs here; "
            "the kubernetes target is not available yet"
        )
    from .local.target import LocalProcessTarget  # processes load only when a target is made

    return LocalProcessTarget(spec.app, state_dir, router_port=spec.target.router_port)
