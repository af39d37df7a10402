"""The workflow's activeDeadlineSeconds: a backstop for a stuck workflow, derived from the plan.

A release spec has no overall timeout; the gatekeeper bounds each wait itself (an analysis by
its duration, a hold or an approval by ``hold_timeout``). The deadline is the sum of those
bounds, so it never cuts a release that keeps to them:

    the plan's waits         every analysis and bake, every scale-down delay (time-scaled)
    + hold_timeout           for each step that may hold: an approval, a shift, a batch and
                             the promotion each wait at most this long (time-scaled)
    + a per-step allowance   STEP_ALLOWANCE_S for each step: starting pods, smoke checks,
                             retries with backoff; a Kubernetes target's progress_deadline
                             when that is longer (readiness is real time, never scaled)

When the deadline passes, Argo fails the running nodes and the exit handler rolls back.
"""

from __future__ import annotations

import math

from gatekeeper.domain.plan import (
    Analyze,
    Plan,
    Promote,
    ScaleBatch,
    ShiftTraffic,
    WaitForApproval,
)
from gatekeeper.domain.release import KubernetesTarget, ReleaseSpec

STEP_ALLOWANCE_S = 600.0
HOLDING_STEPS = (WaitForApproval, ShiftTraffic, ScaleBatch, Promote)


def active_deadline_seconds(plan: Plan, spec: ReleaseSpec) -> int:
    """Seconds the whole workflow may run (see the module docstring)."""
    waits = sum(s.duration for s in plan.steps if isinstance(s, Analyze))
    waits += sum(s.scale_down_delay for s in plan.steps if isinstance(s, Promote))
    holds = sum(1 for s in plan.steps if isinstance(s, HOLDING_STEPS))
    allowance = STEP_ALLOWANCE_S
    if isinstance(spec.target, KubernetesTarget):
        allowance = max(allowance, spec.target.progress_deadline)
    total = waits + holds * spec.scaled(spec.hold_timeout) + len(plan.steps) * allowance
    return math.ceil(total)
