"""The target protocol: where versions run and how traffic is split between them.

Every method is idempotent and safe to call again after a crash: it reads the actual
state before acting, so a resumed release never shifts traffic twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from gatekeeper.domain.traffic import RouterAbility


@dataclass(frozen=True)
class TargetState:
    """What is actually running and where traffic actually goes."""

    stable_version: str | None
    candidate_version: str | None
    candidate_weight: int  # percent of traffic on the candidate, 0..100
    candidate_scale_percent: int  # the candidate's size as a share of stable's full size
    stable_scale_percent: int  # stable's size as a share of its full size
    candidate_ready: bool
    details: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VersionRun:
    """How to run one version: a command (local) or an image (kubernetes)."""

    version: str
    command: str | None = None
    image: str | None = None


@dataclass(frozen=True)
class Health:
    """P0 signals of one version's workloads: what is wrong with them now, as a kubelet or
    a process supervisor sees it (crash loops, restarts, exited processes, pods not ready).

    Each problem names the object and the value ("pod shop-v2-7f9 CrashLoopBackOff,
    restarts 3"). Empty when healthy. The abort guard rolls back on a problem seen twice in
    a row, without waiting for metrics.
    """

    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


class Workloads(Protocol):
    """Where versions run: each at a size, ready or not, stopped when done."""

    name: str

    def state(self) -> TargetState: ...

    def ensure_stable(self, stable: VersionRun) -> None:
        """Stable runs at full size."""

    def deploy_candidate(self, candidate: VersionRun, scale_percent: int) -> None:
        """The candidate runs at ``scale_percent`` of stable's size (no traffic change)."""

    def scale_stable(self, percent: int) -> None:
        """Rolling: stable runs at ``percent`` of its full size."""

    def preview_url(self) -> str:
        """A URL that reaches the candidate directly, bypassing the traffic split."""

    def promote(self, scale_down_delay_s: float) -> None:
        """The candidate becomes stable at full size; the old stable stops after the delay."""

    def rollback(self) -> None:
        """Stable at full size and taking all traffic; the candidate stops."""

    def metrics_endpoints(self, version: str | None = None) -> list[str]:
        """host:port of every running version's /metrics (of ``version`` only when given)."""

    def health(self, version: str) -> Health:
        """P0 signals of ``version``'s workloads now (read, not remembered)."""

    def close(self) -> None:
        """Release local resources (not the running versions)."""


class TrafficRouter(Protocol):
    """How traffic is split between stable and the candidate; it says what it can carry out."""

    @property
    def ability(self) -> RouterAbility: ...

    def weight(self) -> int:
        """The candidate's share of traffic as the data plane has it now, in percent."""

    def set_weight(self, weight: int) -> None:
        """``weight`` percent of traffic to the candidate, the rest to stable."""

    def verify_weight(self, weight: int) -> bool:
        """Whether the data plane carries ``weight`` now (read back, not remembered)."""

    def finalize(self) -> None:
        """After promotion: all traffic to the new stable, no candidate route left."""


class Target(Protocol):
    """Workloads and their router in one object (the local target is both)."""

    name: str

    def state(self) -> TargetState: ...

    def ensure_stable(self, stable: VersionRun) -> None:
        """Stable runs at full size and takes the traffic the candidate does not."""

    def deploy_candidate(self, candidate: VersionRun, scale_percent: int) -> None:
        """The candidate runs at ``scale_percent`` of stable's size (no traffic change)."""

    def set_weight(self, weight: int) -> None:
        """``weight`` percent of traffic to the candidate, the rest to stable."""

    def scale_stable(self, percent: int) -> None:
        """Rolling: stable runs at ``percent`` of its full size."""

    def preview_url(self) -> str:
        """A URL that reaches the candidate directly, bypassing the traffic split."""

    def traffic_url(self) -> str:
        """The URL users reach (the router)."""

    def promote(self, scale_down_delay_s: float) -> None:
        """The candidate becomes stable at full size; the old stable stops after the delay."""

    def rollback(self) -> None:
        """All traffic to stable at full size; the candidate stops."""

    def metrics_endpoints(self, version: str | None = None) -> list[str]:
        """host:port of every running version's /metrics (of ``version`` only when given),
        for scrapers."""

    def health(self, version: str) -> Health:
        """P0 signals of ``version``'s workloads now (read, not remembered)."""

    def close(self) -> None:
        """Release local resources (not the running versions)."""
