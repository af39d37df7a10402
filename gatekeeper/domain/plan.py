"""Plans: the ordered, typed steps a strategy makes of a release spec.

A plan is data. The local executor runs it; the Argo compiler turns the same plan
into a workflow. Every step is idempotent: it reads the actual state before acting.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from .durations import Duration, format_duration


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Unique within the plan, e.g. 'shift-25'.")

    def describe(self) -> str:
        raise NotImplementedError


class DeployCandidate(_Step):
    """Start the candidate next to stable, with no traffic (scale as a share of stable)."""

    kind: Literal["deploy"] = "deploy"
    scale_percent: int = Field(default=100, ge=0, le=100)

    def describe(self) -> str:
        return f"deploy candidate at {self.scale_percent}% of stable's size, no traffic"


class SmokeCheck(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = "/"
    expect_status: int = Field(default=200, ge=100, le=599)
    attempts: int = Field(default=10, ge=1, le=1000)
    timeout: Duration = 2.0


class Verify(_Step):
    """HTTP smoke checks against the candidate directly (the preview route)."""

    kind: Literal["verify"] = "verify"
    checks: tuple[SmokeCheck, ...] = (SmokeCheck(),)

    def describe(self) -> str:
        paths = ", ".join(f"{c.path} -> {c.expect_status}" for c in self.checks)
        return f"smoke checks on the preview route: {paths}"


class ShiftTraffic(_Step):
    """Send ``weight`` percent of traffic to the candidate."""

    kind: Literal["shift"] = "shift"
    weight: int = Field(ge=0, le=100)

    def describe(self) -> str:
        return f"shift traffic: candidate {self.weight}%, stable {100 - self.weight}%"


class ScaleBatch(_Step):
    """Rolling: replace ``percent`` of stable's replicas with the candidate (traffic follows)."""

    kind: Literal["batch"] = "batch"
    percent: int = Field(ge=1, le=100)

    def describe(self) -> str:
        return f"replace {self.percent}% of replicas with the candidate"


class Analyze(_Step):
    """Evaluate every gate each interval for ``duration``; fail rolls back, hold waits."""

    kind: Literal["analyze"] = "analyze"
    duration: Duration

    def describe(self) -> str:
        return f"analyze gates for {format_duration(self.duration)}"


class WaitForApproval(_Step):
    """Wait until a person with one of ``roles`` approves."""

    kind: Literal["approval"] = "approval"
    roles: tuple[str, ...] = ("release-manager",)

    def describe(self) -> str:
        return f"wait for approval by {' or '.join(self.roles)}"

    def accepts(self, step: str, role: str) -> bool:
        """Whether an approval of ``step`` given in ``role`` lets this step go on: the one
        rule the approval step, `gatekeeper approve` and `run --approve` share."""
        return step == self.name and role in self.roles


class Promote(_Step):
    """Make the candidate the new stable; the old version scales down after a delay."""

    kind: Literal["promote"] = "promote"
    scale_down_delay: Duration = 0.0

    def describe(self) -> str:
        return f"promote; old version scales down after {format_duration(self.scale_down_delay)}"


class Rollback(_Step):
    """All traffic back to stable, stable at full size, candidate removed."""

    kind: Literal["rollback"] = "rollback"

    def describe(self) -> str:
        return "roll back: all traffic to stable, candidate removed"


Step = Annotated[
    DeployCandidate
    | Verify
    | ShiftTraffic
    | ScaleBatch
    | Analyze
    | WaitForApproval
    | Promote
    | Rollback,
    Field(discriminator="kind"),
]


class Plan(BaseModel):
    """An ordered list of steps, and the steps that undo it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    release: str
    strategy: str
    expedited: bool = False
    steps: tuple[Step, ...]
    rollback: tuple[Step, ...] = (Rollback(name="rollback"),)

    def index_of(self, name: str) -> int:
        for i, s in enumerate(self.steps):
            if s.name == name:
                return i
        raise KeyError(name)
