"""What the service hears from a release it drives: audit entries, its metrics, notifications.

The executor calls a listener after each record it writes. Here each call becomes an
audit entry (steps, verdict changes, rollbacks), the service's metrics and, through the
Notifier (which never blocks), a notification. None of it may stop a release: a failure
is logged and the release goes on; only ``Deposed`` (the controller's term is over)
passes through, so a deposed controller stops at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from functools import partial

from gatekeeper.domain.clock import SYSTEM_CLOCK, Clock
from gatekeeper.domain.plan import Step, WaitForApproval
from gatekeeper.domain.release import ReleaseSpec
from gatekeeper.domain.verdicts import GateResult, Verdict
from gatekeeper.store.base import ServiceStore
from gatekeeper.targets.base import TargetState
from gates.verdict import is_measurement_error

from .. import audit
from ..notify import EventKind, Notification, Notifier
from ..service_metrics import ApprovalOutcome, RollbackReason, ServiceMetrics, StepResult
from ..steps.approval import counting

log = logging.getLogger("gatekeeper.service")

CONTROLLER = "gatekeeper"  # the audit log's actor for what the controller does


def rollback_kind(reason: str) -> RollbackReason:
    """The ``reason_kind`` of a rollback, from its reason's words."""
    text = reason.lower()
    if text.startswith("p0:"):
        return RollbackReason.P0
    if "hold_timeout" in text:
        return RollbackReason.HOLD_TIMEOUT
    if text.startswith(("aborted by", "stopped by")) or " rejected by " in text:
        return RollbackReason.MANUAL
    if text.startswith("internal error"):
        return RollbackReason.ERROR
    if ":" in text and text.split(":", 1)[0] in ("deploy", "verify", "smoke", "promote"):
        return RollbackReason.STEP
    return RollbackReason.GATE


class ServiceListener:
    """One release's listener: audit, metrics and notifications for what its run does."""

    def __init__(
        self,
        spec: ReleaseSpec,
        store: ServiceStore,
        metrics: ServiceMetrics,
        notifier: Notifier,
        *,
        term_detail: dict[str, object],
        url: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
        provider: str = "prometheus",
    ) -> None:
        self.spec = spec
        self.provider = provider  # the metrics source's name on gatekeeper_metrics_provider_*
        self.store = store
        self.metrics = metrics
        self.notifier = notifier
        self.term_detail = term_detail  # who wrote it: the controller's holder and epoch
        self.url = url
        self.clock = clock
        self._step: Step | None = None
        self._index = 0
        self._step_since: datetime | None = None
        self._verdicts: dict[str, Verdict] = {}
        self._rollback_at: datetime | None = None
        self._rollback_reason = ""

    # -- the Listener protocol --------------------------------------------------------------

    def step(self, index: int, total: int, step: Step) -> None:
        now = self.clock.now()
        self._step, self._step_since, self._index = step, now, index
        self._quietly(
            lambda: self.metrics.release_at(
                self.spec.app, self.spec.environment, step.kind, since=now
            )
        )
        self._audit(
            "step", {"index": index, "step": step.name, "kind": step.kind, "state": "started"}
        )
        if isinstance(step, WaitForApproval):
            self._quietly(lambda: self._approval_needed(step, now))

    def event(self, kind: str, message: str) -> None:
        if kind == "step-completed":
            self._step_completed(message)
        elif kind == "rollback":
            self._rollback_at = self.clock.now()
            self._rollback_reason = message.removeprefix("rolling back: ")
            self._quietly(
                lambda: self.metrics.release_at(
                    self.spec.app, self.spec.environment, "rolling-back", since=self.clock.now()
                )
            )
            self._audit("rollback", {"reason": self._rollback_reason})
        elif kind == "phase" and message.startswith("holding:") and self._is_gate_hold():
            self._quietly(
                lambda: self.metrics.release_at(
                    self.spec.app, self.spec.environment, "holding", since=self.clock.now()
                )
            )

    def gates(self, results: list[GateResult]) -> None:
        app, environment = self.spec.app, self.spec.environment
        for result in results:
            self._quietly(partial(self.metrics.gate_result, app, environment, result))
            if is_measurement_error(result):  # its queries kept failing
                self._quietly(partial(self.metrics.metrics_provider_error, self.provider))
            before = self._verdicts.get(result.gate)
            if before is not result.verdict:
                self._verdicts[result.gate] = result.verdict
                self._audit(
                    "verdict-change",
                    {
                        "gate": result.gate,
                        "from": None if before is None else before.value,
                        "to": result.verdict.value,
                        "reason": result.reason,
                    },
                )

    def traffic(self, state: TargetState) -> None:
        if self._rollback_at is None or state.candidate_weight != 0:
            return
        detected, self._rollback_at = self._rollback_at, None
        kind = rollback_kind(self._rollback_reason)
        self._quietly(
            lambda: self.metrics.rollback(
                self.spec.app,
                self.spec.environment,
                kind,
                detected_at=detected,
                stable_at=self.clock.now(),
            )
        )

    # -- helpers ----------------------------------------------------------------------------

    def notify(self, kind: EventKind, *, reason: str = "", step: str | None = None) -> None:
        """Queue a notification (never blocks: a slow receiver delays nothing here)."""
        self._quietly(
            lambda: self.notifier.notify(
                Notification.of(
                    self.spec, kind, at=self.clock.now(), reason=reason, url=self.url, step=step
                )
            )
        )

    def _is_gate_hold(self) -> bool:
        return not isinstance(self._step, WaitForApproval)

    def _approval_needed(self, step: WaitForApproval, now: datetime) -> None:
        if counting(step, self.store.approvals(self.spec.release_id)) is not None:
            return  # approved already (before it started, or up front)
        self.metrics.approval_waiting(
            self.spec.app, self.spec.environment, self.spec.release_id, step.name, since=now
        )
        self.notify(
            EventKind.APPROVAL_NEEDED,
            step=step.name,
            reason=f"{step.name}: waiting for approval by {' or '.join(step.roles)}",
        )

    def _step_completed(self, name: str) -> None:
        step, since = self._step, self._step_since
        now = self.clock.now()
        if step is None or step.name != name or since is None:
            return
        self._quietly(
            lambda: self.metrics.step_finished(
                step.kind, StepResult.COMPLETED, (now - since).total_seconds()
            )
        )
        if isinstance(step, WaitForApproval):
            self._quietly(
                lambda: self.metrics.approval_settled(
                    self.spec.app,
                    self.spec.environment,
                    self.spec.release_id,
                    name,
                    ApprovalOutcome.APPROVED,
                    at=now,
                )
            )
        self._audit(
            "step", {"index": self._index, "step": name, "kind": step.kind, "state": "completed"}
        )
        self.notify(EventKind.STEP_COMPLETED, step=name)

    def _audit(self, action: str, detail: dict[str, object]) -> None:
        self._quietly(
            lambda: audit.record(
                self.store,
                CONTROLLER,
                action,
                self.spec.release_id,
                {**detail, **self.term_detail},
                clock=self.clock,
            )
        )

    def _quietly(self, action: Callable[[], object]) -> None:
        try:
            action()
        except Exception as e:  # never stops the release; Deposed (a BaseException) does
            log.warning("release %s: %s: %s", self.spec.release_id, type(e).__name__, e)
