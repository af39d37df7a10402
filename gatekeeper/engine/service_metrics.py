"""The service's own metrics: what `gatekeeper serve` exposes on /metrics, in its own registry.

Callers use the small typed methods below and never touch prometheus-client. Labels are
bounded: apps, environments, gate names, step kinds and fixed outcome words; never a
release id or a version. docs/metrics.md describes each metric and the alerts it serves.
"""

from __future__ import annotations

import threading
from datetime import datetime
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gatekeeper.domain.release import Phase
from gatekeeper.domain.verdicts import GateResult, Verdict

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The Content-Type of `exposition()` (the Prometheus text format)."""

# From a fast flip (seconds) to a rollback that waited on a slow router or store (an hour).
ROLLBACK_BUCKETS = (1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
# From a traffic shift (under a second) to a blue-green bake (hours).
STEP_BUCKETS = (0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0)
# From a pre-approved step (no wait) to an approval left overnight.
APPROVAL_BUCKETS = (10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0)

OUTCOMES = tuple(p.value for p in Phase if p.final)


class RollbackReason(StrEnum):
    """Why traffic went back to stable: the ``reason_kind`` label of rollbacks."""

    GATE = "gate"  # a metric gate said fail (the abort gate included)
    P0 = "p0"  # a P0 signal: a crash loop, a killed process, the gateway's 5xx
    STEP = "step"  # a step could not reach its goal (a smoke check, a deploy)
    HOLD_TIMEOUT = "hold-timeout"  # held longer than the release's hold_timeout
    MANUAL = "manual"  # a person aborted the release or asked for the rollback
    ERROR = "error"  # an internal error


class StepResult(StrEnum):
    """How a plan step ended: the ``result`` label of steps."""

    COMPLETED = "completed"
    FAILED = "failed"  # a gate failed during it, or the step could not reach its goal
    ABORTED = "aborted"  # stopped: a person, a hold timeout, the service shutting down


class ApprovalOutcome(StrEnum):
    """How a wait for approval ended: the ``outcome`` label of approval waits."""

    APPROVED = "approved"
    REJECTED = "rejected"
    ABANDONED = "abandoned"  # the release ended (rolled back, aborted) while it waited


class NotificationResult(StrEnum):
    """What became of one notification to one receiver."""

    SENT = "sent"
    FAILED = "failed"  # every attempt failed, or the receiver refused it (4xx)
    DROPPED = "dropped"  # the receiver's queue was full, or the service stopped first


def _choice(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"{what} {value!r} is not one of {', '.join(allowed)}")
    return value


def _seconds_between(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())


class ServiceMetrics:
    """Every metric of the service, registered in one private registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._releases = Counter(
            "gatekeeper_releases",
            "Releases that ended, by outcome (promoted, rolled_back, aborted, failed).",
            ["app", "environment", "outcome"],
            registry=r,
        )
        self._in_progress = Gauge(
            "gatekeeper_releases_in_progress",
            "1 for each release in progress, labelled with the step it is at.",
            ["app", "environment", "step"],
            registry=r,
        )
        self._step_since = Gauge(
            "gatekeeper_release_step_started_timestamp_seconds",
            "When the release in progress reached the step it is at (Unix time).",
            ["app", "environment", "step"],
            registry=r,
        )
        self._rollbacks = Counter(
            "gatekeeper_rollbacks",
            "Rollbacks: traffic put back on stable, by why.",
            ["app", "environment", "reason_kind"],
            registry=r,
        )
        self._time_to_rollback = Histogram(
            "gatekeeper_time_to_rollback_seconds",
            "From the failure's detection to all traffic back on stable.",
            registry=r,
            buckets=ROLLBACK_BUCKETS,
        )
        self._steps = Counter(
            "gatekeeper_steps",
            "Plan steps that ended, by kind and result.",
            ["kind", "result"],
            registry=r,
        )
        self._step_duration = Histogram(
            "gatekeeper_step_duration_seconds",
            "How long plan steps took, by kind.",
            ["kind"],
            registry=r,
            buckets=STEP_BUCKETS,
        )
        self._verdicts = Counter(
            "gatekeeper_gate_verdicts",
            "Gate evaluations, by gate and verdict.",
            ["gate", "verdict"],
            registry=r,
        )
        self._gate_value = Gauge(
            "gatekeeper_gate_value",
            "The last value a gate measured for the release in progress.",
            ["app", "environment", "gate"],
            registry=r,
        )
        self._gate_threshold = Gauge(
            "gatekeeper_gate_threshold",
            "The threshold the gate compares its value with.",
            ["app", "environment", "gate"],
            registry=r,
        )
        self._approvals_waiting = Gauge(
            "gatekeeper_approvals_waiting",
            "Steps waiting for a person's approval.",
            ["app", "environment"],
            registry=r,
        )
        self._approval_oldest = Gauge(
            "gatekeeper_approval_oldest_waiting_timestamp_seconds",
            "Since when the oldest approval still waiting has waited (Unix time).",
            ["app", "environment"],
            registry=r,
        )
        self._approval_wait = Histogram(
            "gatekeeper_approval_wait_seconds",
            "How long approvals waited, by how the wait ended.",
            ["outcome"],
            registry=r,
            buckets=APPROVAL_BUCKETS,
        )
        self._queue = Gauge(
            "gatekeeper_queue_length",
            "Releases submitted and waiting for the one in progress for the same app and "
            "environment.",
            ["app", "environment"],
            registry=r,
        )
        self._leader = Gauge(
            "gatekeeper_leader",
            "1 while this instance is the active controller, 0 otherwise.",
            registry=r,
        )
        self._provider_errors = Counter(
            "gatekeeper_metrics_provider_errors",
            "Queries to a metrics provider that failed after their retries.",
            ["provider"],
            registry=r,
        )
        self._audit_ok = Gauge(
            "gatekeeper_audit_chain_ok",
            "1 when the last check of the audit trail's hash chain found it intact, 0 when broken.",
            registry=r,
        )
        self._audit_checked = Gauge(
            "gatekeeper_audit_chain_last_check_timestamp_seconds",
            "When the audit trail's hash chain was last checked (Unix time).",
            registry=r,
        )
        self._notifications = Counter(
            "gatekeeper_notifications",
            "Notifications by receiver and result (sent, failed, dropped).",
            ["receiver", "result"],
            registry=r,
        )
        self._leader.set(0)
        self._lock = threading.Lock()
        self._steps_at: dict[tuple[str, str], str] = {}
        self._gates_of: dict[tuple[str, str], set[str]] = {}
        self._waiting: dict[tuple[str, str], dict[tuple[str, str], float]] = {}

    # -- releases -------------------------------------------------------------------------

    def release_at(self, app: str, environment: str, step: str, *, since: datetime) -> None:
        """The release in progress for ``app`` in ``environment`` is at ``step`` from ``since``:
        a plan step's kind (deploy, verify, shift, batch, analyze, approval, promote), or
        ``holding`` while a gate holds it, or ``rolling-back``."""
        if not step:
            raise ValueError(f"release of {app} in {environment}: step is empty")
        key = (app, environment)
        with self._lock:
            previous = self._steps_at.get(key)
            if previous is not None and previous != step:
                self._remove(self._in_progress, app, environment, previous)
                self._remove(self._step_since, app, environment, previous)
            self._steps_at[key] = step
            self._in_progress.labels(app, environment, step).set(1)
            if previous != step:
                self._step_since.labels(app, environment, step).set(since.timestamp())

    def release_finished(
        self, app: str, environment: str, outcome: Phase | str, *, started: bool = True
    ) -> None:
        """A release ended: counted by outcome; its in-progress, gate and approval series
        are removed. One that never started (queued, then aborted or rejected) is only
        counted: the series of its app and environment belong to the release running."""
        value = _choice(str(outcome), OUTCOMES, f"release of {app} in {environment}: outcome")
        self._releases.labels(app, environment, value).inc()
        if not started:
            return
        key = (app, environment)
        with self._lock:
            step = self._steps_at.pop(key, None)
            if step is not None:
                self._remove(self._in_progress, app, environment, step)
                self._remove(self._step_since, app, environment, step)
            # One release per app and environment: whatever it still waited for, it no
            # longer does (a wait settled as abandoned was observed already).
            if self._waiting.pop(key, None) is not None:
                self._show_waits(key)
            for gate in self._gates_of.pop(key, set()):
                self._remove(self._gate_value, app, environment, gate)
                self._remove(self._gate_threshold, app, environment, gate)

    def rollback(
        self,
        app: str,
        environment: str,
        reason_kind: RollbackReason | str,
        *,
        detected_at: datetime,
        stable_at: datetime,
    ) -> None:
        """Traffic is back on stable: ``detected_at`` is when the failure was seen (the gate's
        fail, the P0 signal, the abort), ``stable_at`` when all traffic was on stable."""
        kind = _choice(
            str(reason_kind),
            tuple(RollbackReason),
            f"rollback of {app} in {environment}: reason_kind",
        )
        self._rollbacks.labels(app, environment, kind).inc()
        self._time_to_rollback.observe(_seconds_between(detected_at, stable_at))

    def step_finished(self, kind: str, result: StepResult | str, duration_s: float) -> None:
        """A plan step of ``kind`` ended with ``result`` after ``duration_s`` seconds."""
        value = _choice(str(result), tuple(StepResult), f"step {kind}: result")
        if duration_s < 0:
            raise ValueError(f"step {kind}: duration {duration_s}s is negative")
        self._steps.labels(kind, value).inc()
        self._step_duration.labels(kind).observe(duration_s)

    def queue_length(self, app: str, environment: str, length: int) -> None:
        """Releases of ``app`` in ``environment`` waiting for the one in progress."""
        if length < 0:
            raise ValueError(f"queue of {app} in {environment}: length {length} is negative")
        self._queue.labels(app, environment).set(length)

    # -- gates ----------------------------------------------------------------------------

    def gate_result(self, app: str, environment: str, result: GateResult) -> None:
        """One gate's verdict: counted, and its value and threshold kept for plotting (a gate
        without a value, such as one with no data, has no value series)."""
        self._verdicts.labels(result.gate, Verdict(result.verdict).value).inc()
        key = (app, environment)
        with self._lock:
            self._gates_of.setdefault(key, set()).add(result.gate)
            for gauge, value in (
                (self._gate_value, result.value),
                (self._gate_threshold, result.threshold),
            ):
                if value is None:
                    self._remove(gauge, app, environment, result.gate)
                else:
                    gauge.labels(app, environment, result.gate).set(value)

    def metrics_provider_error(self, provider: str) -> None:
        """A query to ``provider`` failed after its retries (the gate is inconclusive)."""
        self._provider_errors.labels(provider).inc()

    # -- approvals ------------------------------------------------------------------------

    def approval_waiting(
        self, app: str, environment: str, release_id: str, step: str, *, since: datetime
    ) -> None:
        """Step ``step`` of ``release_id`` waits for a person from ``since``. The release id
        only tells waits apart; it is never a label."""
        key = (app, environment)
        with self._lock:
            waits = self._waiting.setdefault(key, {})
            waits.setdefault((release_id, step), since.timestamp())
            self._show_waits(key)

    def approval_settled(
        self,
        app: str,
        environment: str,
        release_id: str,
        step: str,
        outcome: ApprovalOutcome | str,
        *,
        at: datetime,
    ) -> None:
        """The wait of ``step`` of ``release_id`` ended at ``at``; its length is observed."""
        value = _choice(
            str(outcome),
            tuple(ApprovalOutcome),
            f"approval of {step} of {release_id}: outcome",
        )
        key = (app, environment)
        with self._lock:
            started = self._waiting.get(key, {}).pop((release_id, step), None)
            self._show_waits(key)
        if started is not None:
            self._approval_wait.labels(value).observe(max(0.0, at.timestamp() - started))

    def _show_waits(self, key: tuple[str, str]) -> None:
        waits = self._waiting.get(key, {})
        self._approvals_waiting.labels(*key).set(len(waits))
        if waits:
            self._approval_oldest.labels(*key).set(min(waits.values()))
        else:
            self._waiting.pop(key, None)
            self._remove(self._approval_oldest, *key)

    # -- the service ----------------------------------------------------------------------

    def leader(self, active: bool) -> None:
        """Whether this instance is the active controller."""
        self._leader.set(1 if active else 0)

    def audit_chain(self, ok: bool, *, checked_at: datetime) -> None:
        """The result of a check of the audit trail's hash chain."""
        self._audit_ok.set(1 if ok else 0)
        self._audit_checked.set(checked_at.timestamp())

    def notification(self, receiver: str, result: NotificationResult | str) -> None:
        """What became of one notification to ``receiver``."""
        value = _choice(
            str(result), tuple(NotificationResult), f"notification to {receiver}: result"
        )
        self._notifications.labels(receiver, value).inc()

    # -- exposition -----------------------------------------------------------------------

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format, for GET /metrics (see CONTENT_TYPE)."""
        return generate_latest(self.registry)

    @staticmethod
    def _remove(metric: Gauge, *labels: str) -> None:
        try:
            metric.remove(*labels)
        except KeyError:  # never set (older prometheus-client raises): nothing to remove
            pass
