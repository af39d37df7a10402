"""Plan steps, one module per kind, found by kind: each a function of (release, step, context).

The local executor runs them in order; `gatekeeper step run` runs one of them alone
(as an Argo pod does), with the same code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gatekeeper.domain.errors import StepFailed
from gatekeeper.domain.plan import Step
from gatekeeper.domain.release import ReleaseSpec

from . import analyze, approval, batch, deploy, promote, rollback, shift, verify
from .context import StepContext

StepFn = Callable[[ReleaseSpec, Any, StepContext], None]

STEPS: dict[str, StepFn] = {
    "deploy": deploy.run,
    "verify": verify.run,
    "shift": shift.run,
    "batch": batch.run,
    "analyze": analyze.run,
    "approval": approval.run,
    "promote": promote.run,
    "rollback": rollback.run,
}

__all__ = ["STEPS", "StepContext", "run_step"]


def run_step(release: ReleaseSpec, step: Step, ctx: StepContext) -> None:
    try:
        fn = STEPS[step.kind]
    except KeyError:
        raise StepFailed(f"step {step.name}: no implementation for kind {step.kind!r}") from None
    fn(release, step, ctx)
