"""The facade the API calls: every action on releases, checked by role and recorded.

Each method takes the authenticated principal, asks ``gatekeeper.domain.access`` (a
refusal is audited and raised as AccessDenied, naming the missing role), acts on the
store, appends the action to the audit log and queues its notification. The API's own
writes (submissions, approvals, aborts) need no lease: the controller, on the leader,
reads them at its next pass.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from gatekeeper.domain.access import (
    AccessDenied,
    Action,
    Decision,
    Principal,
    ReleaseFacts,
    authorize,
)
from gatekeeper.domain.clock import SYSTEM_CLOCK, Clock
from gatekeeper.domain.errors import Conflict, InvalidInput
from gatekeeper.domain.plan import Plan, WaitForApproval
from gatekeeper.domain.release import Phase, parse_release
from gatekeeper.store.audit_chain import AuditEntry
from gatekeeper.store.base import Approval, Event, IdempotencyKey, ReleaseRecord, ServiceStore

from .. import audit
from ..auth import Authenticator
from ..notify import EventKind, Notification, Notifier
from ..service_metrics import ApprovalOutcome, ServiceMetrics
from .submission import accepted_spec, check_key, queued_record, revert_data, spec_hash
from .views import ReleaseDetail, ReleaseSummary, detail, summary

log = logging.getLogger("gatekeeper.service")


class NotFound(InvalidInput):
    """The release (or its step) named in the request does not exist."""


class ReleaseService:
    """Submit, read, approve, reject, abort, retry and roll back releases."""

    def __init__(
        self,
        store: ServiceStore,
        authenticator: Authenticator,
        metrics: ServiceMetrics,
        notifier: Notifier,
        *,
        targets: tuple[str, ...] = ("kubernetes",),
        executor: str = "local",
        argo_configured: bool = False,
        public_url: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.store = store
        self.authenticator = authenticator
        self.metrics = metrics
        self.notifier = notifier
        self.targets = targets
        self.executor = executor
        self.argo_configured = argo_configured
        self.public_url = public_url
        self.clock = clock

    # -- who asks -------------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> Principal:
        return self.authenticator.authenticate(authorization)

    def _require(
        self, principal: Principal, action: Action, facts: ReleaseFacts | None = None
    ) -> Decision:
        decision = authorize(principal, action, facts)
        if not decision.allowed:
            self._audit(
                principal.name,
                "access-denied",
                None if facts is None else facts.release_id,
                {
                    "action": action.value,
                    "rule": decision.rule.value,
                    "missing": [r.value for r in decision.missing],
                    "reason": decision.reason,
                },
            )
            raise AccessDenied(decision)
        return decision

    # -- reading --------------------------------------------------------------------------

    def find(
        self,
        principal: Principal,
        *,
        app: str | None = None,
        environment: str | None = None,
        phase: Phase | None = None,
        limit: int = 100,
    ) -> list[ReleaseSummary]:
        self._require(principal, Action.VIEW)
        records = self.store.find_releases(
            app=app, environment=environment, phases=None if phase is None else [phase], limit=limit
        )
        return [summary(r) for r in records]

    def get(self, principal: Principal, release_id: str) -> ReleaseDetail:
        self._require(principal, Action.VIEW)
        return self._detail(release_id)

    def audit_entries(
        self, principal: Principal, release_id: str | None, after: int, limit: int
    ) -> list[dict[str, Any]]:
        self._require(principal, Action.AUDIT_READ)
        entries = audit.entries(self.store, release_id, after_seq=after, limit=limit)
        return [audit.entry_json(e) for e in entries]

    # -- submitting -----------------------------------------------------------------------

    def submit(
        self, principal: Principal, data: Mapping[str, Any], key: str | None = None
    ) -> tuple[ReleaseDetail, bool]:
        """Queue a release; the same idempotency key (or the same spec again) returns the
        release it made the first time, with False."""
        self._require(principal, Action.SUBMIT)
        key = check_key(key)
        spec, plan = accepted_spec(
            dict(data),
            targets=self.targets,
            executor=self.executor,
            argo_configured=self.argo_configured,
        )
        facts = ReleaseFacts(
            spec.release_id, expedited=spec.expedited, expedited_reason=spec.expedited_reason
        )
        self._require(principal, Action.SUBMIT, facts)
        now = self.clock.now()
        rid = spec.release_id
        what = f"{spec.app} {spec.version} ({spec.strategy.type}) submitted by {principal.name}"
        if spec.expedited:
            what += f"; expedited: {spec.expedited_reason}"
        said = {
            "version": spec.version,
            "strategy": spec.strategy.type,
            "expedited": spec.expedited,
            "expedited_reason": spec.expedited_reason,
            "revert": spec.revert,
            "idempotency_key": key,
        }
        stored, created = self.store.submit_release(
            queued_record(spec, principal.name, now, plan),
            None if key is None else IdempotencyKey(principal.name, key, spec_hash(spec)),
            event=Event(rid, now, "submitted", what, actor=principal.name),
            audit=AuditEntry(now, principal.name, "submit", rid, said),
        )
        if created:
            self._notify(stored, EventKind.SUBMITTED, reason=what)
        return self._detail(stored.release_id), created

    def rollback(
        self, principal: Principal, release_id: str, reason: str = ""
    ) -> tuple[ReleaseDetail, bool]:
        """Release the version a promoted release replaced again, over it (a revert that
        goes through the queue like any release); asking twice gives the same revert."""
        record = self._record(release_id)
        self._require(principal, Action.ROLLBACK, self._facts(record))
        if record.phase is not Phase.PROMOTED:
            raise Conflict(
                f"release {release_id} is {record.phase.value}, not promoted: only a promoted "
                "release is rolled back to its previous version (abort a running one)"
            )
        latest = self.store.find_releases(
            app=record.app, environment=record.environment, phases=[Phase.PROMOTED], limit=1
        )
        if latest and latest[0].release_id != release_id:
            raise Conflict(
                f"release {release_id} is not what {record.app} runs in {record.environment}: "
                f"{latest[0].release_id} was promoted after it; roll that one back"
            )
        spec, plan = accepted_spec(
            revert_data(record),
            targets=self.targets,
            executor=self.executor,
            argo_configured=self.argo_configured,
        )
        now = self.clock.now()
        said = f"rollback of {release_id} to {spec.version} asked by {principal.name}"
        said += f": {reason}" if reason else ""
        detail = {"release": spec.release_id, "to": spec.version, "reason": reason}
        stored, created = self.store.submit_release(
            queued_record(spec, principal.name, now, plan),
            event=Event(spec.release_id, now, "submitted", said, actor=principal.name),
            audit=AuditEntry(now, principal.name, "rollback", release_id, detail),
        )
        if created:
            self._event(release_id, "rollback-requested", said, principal.name)
            self._notify(stored, EventKind.SUBMITTED, reason=said)
        return self._detail(stored.release_id), created

    # -- acting on a release ----------------------------------------------------------------

    def approve(
        self, principal: Principal, release_id: str, step: str, comment: str = ""
    ) -> ReleaseDetail:
        record = self._record(release_id)
        waiting = self._approval_step(record, step)
        decision = self._require(principal, Action.APPROVE, self._facts(record, waiting))
        self._not_final(record, "approve")
        plan = Plan.model_validate(record.plan)
        if plan.index_of(step) < record.next_step:
            raise Conflict(f"release {release_id}: step {step} is done already")
        role = decision.role.value if decision.role is not None else ""
        self.store.add_approval(
            Approval(release_id, step, principal.name, role, self.clock.now(), comment)
        )
        said = f"{step} approved by {principal.name} ({role})" + (f": {comment}" if comment else "")
        self._event(release_id, "approval-given", said, principal.name)
        self._audit(
            principal.name, "approve", release_id, {"step": step, "role": role, "comment": comment}
        )
        self._notify(record, EventKind.APPROVED, step=step, by=principal.name, reason=comment)
        return self._detail(release_id)

    def reject(
        self, principal: Principal, release_id: str, step: str, comment: str = ""
    ) -> ReleaseDetail:
        """Reject an approval step: a started release rolls back with the rejection as its
        reason (its driver sees it within a second; under Argo the follower fails the
        suspend node), a queued one ends aborted without starting."""
        record = self._record(release_id)
        waiting = self._approval_step(record, step)
        decision = self._require(principal, Action.REJECT, self._facts(record, waiting))
        self._not_final(record, "reject")
        if record.phase is Phase.ROLLING_BACK:
            raise Conflict(f"release {release_id} is rolling back already ({record.reason})")
        role = decision.role.value if decision.role is not None else ""
        reason = f"{step} rejected by {principal.name} ({role})" + (
            f": {comment}" if comment else ""
        )
        ending = Phase.ABORTED if record.phase is Phase.QUEUED else Phase.ROLLING_BACK
        self.store.set_phase(release_id, ending, reason)
        self._event(release_id, "approval-rejected", reason, principal.name)
        self._audit(
            principal.name, "reject", release_id, {"step": step, "role": role, "comment": comment}
        )
        self._notify(record, EventKind.REJECTED, step=step, by=principal.name, reason=comment)
        self.metrics.approval_settled(
            record.app, record.environment, release_id, step, ApprovalOutcome.REJECTED,
            at=self.clock.now(),
        )  # fmt: skip
        self._ended_unstarted(record, reason)
        return self._detail(release_id)

    def abort(self, principal: Principal, release_id: str, reason: str) -> ReleaseDetail:
        """Stop a release. A queued one ends aborted at once. A started one is marked
        rolling back, stopped: its driver sees it within a second, and whichever controller
        drives it next (after a failover, or a stalled one) finishes the rollback; it ends
        aborted."""
        record = self._record(release_id)
        self._require(principal, Action.ABORT, self._facts(record))
        self._not_final(record, "abort")
        said = (
            f"aborted by {principal.name}: {reason}" if reason else f"aborted by {principal.name}"
        )
        if record.phase is Phase.QUEUED:
            self.store.set_phase(release_id, Phase.ABORTED, said, stopped=True)
        else:
            self.store.set_phase(release_id, Phase.ROLLING_BACK, said, stopped=True)
            self.store.set_stalled(release_id, None)  # drive it, to put traffic back
        self._event(release_id, "abort", said, principal.name)
        self._audit(principal.name, "abort", release_id, {"reason": reason})
        self._ended_unstarted(record, said)
        return self._detail(release_id)

    def retry(self, principal: Principal, release_id: str, comment: str = "") -> ReleaseDetail:
        """Drive a stalled release again: the step it stopped at runs again (steps are
        idempotent), from the leader's next pass."""
        record = self._record(release_id)
        self._require(principal, Action.RETRY, self._facts(record))
        self._not_final(record, "retry")
        if record.stalled is None:
            raise Conflict(
                f"release {release_id} is not stalled (it is {record.phase.value}): retry "
                "drives again a release the controller stopped on an error"
            )
        self.store.set_stalled(release_id, None)
        said = f"retry asked by {principal.name} after: {record.stalled}"
        self._event(release_id, "retry", said, principal.name)
        self._audit(
            principal.name, "retry", release_id, {"stalled": record.stalled, "comment": comment}
        )
        return self._detail(release_id)

    # -- helpers --------------------------------------------------------------------------

    def _detail(self, release_id: str) -> ReleaseDetail:
        bundle = self.store.release_bundle(release_id)
        if bundle is None:
            raise NotFound(f"release {release_id!r} does not exist")
        return detail(bundle)

    def _record(self, release_id: str) -> ReleaseRecord:
        record = self.store.get_release(release_id)
        if record is None:
            raise NotFound(f"release {release_id!r} does not exist")
        return record

    def _approval_step(self, record: ReleaseRecord, step: str) -> WaitForApproval:
        plan = Plan.model_validate(record.plan)
        steps = {s.name: s for s in plan.steps if isinstance(s, WaitForApproval)}
        if step not in steps:
            raise NotFound(
                f"release {record.release_id} has no approval step {step!r}; "
                f"approval steps: {', '.join(steps) or 'none'}"
            )
        return steps[step]

    def _facts(self, record: ReleaseRecord, step: WaitForApproval | None = None) -> ReleaseFacts:
        return ReleaseFacts(
            release_id=record.release_id,
            submitted_by=record.submitted_by,
            expedited=record.expedited,
            expedited_reason=record.spec.get("expedited_reason"),
            step=None if step is None else step.name,
            step_roles=() if step is None else tuple(step.roles),
        )

    def _not_final(self, record: ReleaseRecord, what: str) -> None:
        if record.phase.final:
            raise Conflict(
                f"release {record.release_id} ended already ({record.phase.value}: "
                f"{record.reason}); nothing to {what}"
            )

    def _ended_unstarted(self, record: ReleaseRecord, reason: str) -> None:
        """A queued release ends here (no driver will): count and notify it."""
        if record.phase is Phase.QUEUED:
            self.metrics.release_finished(
                record.app, record.environment, Phase.ABORTED, started=False
            )
            self._notify(record, EventKind.ABORTED, reason=reason)

    def _event(self, release_id: str, kind: str, message: str, actor: str) -> None:
        self.store.record_event(Event(release_id, self.clock.now(), kind, message, actor=actor))

    def _audit(
        self, actor: str, action: str, release_id: str | None, detail: dict[str, Any]
    ) -> None:
        audit.record(self.store, actor, action, release_id, detail, clock=self.clock)

    def _notify(
        self,
        record: ReleaseRecord,
        kind: EventKind,
        *,
        reason: str = "",
        step: str | None = None,
        by: str | None = None,
    ) -> None:
        try:
            spec = parse_release(record.spec, source=f"release {record.release_id}")
            url = (
                None
                if self.public_url is None
                else f"{self.public_url.rstrip('/')}/api/v1/releases/{record.release_id}"
            )
            self.notifier.notify(
                Notification.of(
                    spec, kind, at=self.clock.now(), reason=reason, url=url, step=step, by=by
                )
            )
        except Exception as e:  # a notification never fails the request
            log.warning("notify %s of %s: %s", kind.value, record.release_id, e)
