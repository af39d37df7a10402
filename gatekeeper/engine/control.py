"""Operator actions on releases in the store: approve, abort, history, plans as tables."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gatekeeper.domain.errors import GatekeeperError, InvalidInput
from gatekeeper.domain.phases import PhaseConflict
from gatekeeper.domain.plan import Plan, WaitForApproval
from gatekeeper.domain.release import Phase, parse_release
from gatekeeper.store.base import Approval, Event, Store
from gatekeeper.store.factory import open_store
from strategies.render import plan_json, plan_rows

__all__ = ["abort_release", "approve", "full_history", "plan_json", "plan_rows", "reject"]


def _now() -> datetime:
    return datetime.now(UTC)


def approve(
    release_id: str, step: str, *, by: str, role: str, comment: str = "", db_url: str | None
) -> None:
    """Record an approval; refuses a step that is not an approval or a role it does not take."""
    store = open_store(db_url)
    try:
        record = store.get_release(release_id)
        if record is None:
            raise InvalidInput(f"release {release_id!r} is not in the store")
        plan = Plan.model_validate(record.plan)
        steps = {s.name: s for s in plan.steps if s.kind == "approval"}
        if step not in steps:
            raise InvalidInput(
                f"release {release_id}: step {step!r} is not an approval step; "
                f"approval steps: {', '.join(steps) or 'none'}"
            )
        waiting = steps[step]
        roles = getattr(waiting, "roles", ())
        if not (isinstance(waiting, WaitForApproval) and waiting.accepts(step, role)):
            raise InvalidInput(
                f"release {release_id}: {step} needs one of the roles {', '.join(roles)}; "
                f"{by} approved as {role!r}, which does not count"
            )
        if record.phase.final:
            raise InvalidInput(f"release {release_id} already ended ({record.phase.value})")
        store.add_approval(Approval(release_id, step, by, role, _now(), comment))
        store.record_event(
            Event(
                release_id, _now(), "approval-given", f"{step} approved by {by} ({role})", actor=by
            )
        )
        _on_argo(store, record, lambda client, name: client.resume(name, _index(plan, step)))
    finally:
        store.close()


def reject(
    release_id: str, step: str, *, by: str, role: str, comment: str = "", db_url: str | None
) -> str:
    """Reject an approval step: the release rolls back (a running `gatekeeper run` sees it
    within a second; under Argo the suspend node fails and the exit handler rolls back)."""
    store = open_store(db_url)
    try:
        record = store.get_release(release_id)
        if record is None:
            raise InvalidInput(f"release {release_id!r} is not in the store")
        plan = Plan.model_validate(record.plan)
        waiting = _approval_step(plan, step, release_id)
        if not waiting.accepts(step, role):
            raise InvalidInput(
                f"release {release_id}: {step} takes a decision from one of the roles "
                f"{', '.join(waiting.roles)}; {by} rejected as {role!r}, which does not count"
            )
        if record.phase.final or record.phase is Phase.ROLLING_BACK:
            raise InvalidInput(f"release {release_id} already ended ({record.phase.value})")
        said = f"{step} rejected by {by} ({role})" + (f": {comment}" if comment else "")
        # Never started (queued in the service): nothing to roll back, it ends aborted.
        wanted = Phase.ABORTED if record.phase is Phase.QUEUED else Phase.ROLLING_BACK
        try:
            store.set_phase(release_id, wanted, said)
        except PhaseConflict as e:
            raise InvalidInput(
                f"release {release_id} is {e.current.value} now; the rejection was not recorded"
            ) from e
        store.record_event(Event(release_id, _now(), "approval-rejected", said, actor=by))
        _on_argo(store, record, lambda c, name: c.fail_node(name, _index(plan, step), said))
        return said
    finally:
        store.close()


def _approval_step(plan: Plan, step: str, release_id: str) -> WaitForApproval:
    steps = {s.name: s for s in plan.steps if isinstance(s, WaitForApproval)}
    if step not in steps:
        raise InvalidInput(
            f"release {release_id}: step {step!r} is not an approval step; "
            f"approval steps: {', '.join(steps) or 'none'}"
        )
    return steps[step]


def _index(plan: Plan, step: str) -> str:
    return str(plan.index_of(step))


def _on_argo(store: Store, record: Any, act: Callable[[Any, str], None]) -> None:
    """For a release run by Argo: act on its workflow now (resume or fail an approval's
    suspend node, stop it), when argo-server's settings are in the environment
    (GATEKEEPER_ARGO_SERVER, ...); otherwise the process following the workflow does it on
    its next read. Never fails the operator's action, which the store holds already."""
    if record.spec.get("executor") != "argo" or not os.environ.get("GATEKEEPER_ARGO_SERVER"):
        return
    from workflows.names import workflow_name

    from .argo_executor import client_for
    from .argo_settings import ArgoSettings

    try:
        client = client_for(ArgoSettings.resolve())
        try:
            act(client, workflow_name(record.release_id))
        finally:
            client.close()
    except GatekeeperError as e:
        store.record_event(
            Event(record.release_id, _now(), "argo-server", f"left to the follower: {e}")
        )


def abort_release(
    release_id: str,
    *,
    by: str,
    reason: str,
    db_url: str | None,
    state_dir: Path | None = None,
    shutdown: bool = False,
) -> str:
    """Stop a release: all traffic back to stable, phase aborted. A running `gatekeeper run`
    sees the phase within a second and ends with exit code 4."""
    from gatekeeper.targets.factory import workloads_for

    from .runner import target_dir

    store = open_store(db_url)
    try:
        record = store.get_release(release_id)
        if record is None:
            raise InvalidInput(f"release {release_id!r} is not in the store")
        if record.phase.final and not shutdown:
            raise InvalidInput(f"release {release_id} already ended ({record.phase.value})")
        spec = parse_release(record.spec, source=f"release {release_id}")
        if spec.target.type == "local":
            folder = target_dir(spec, state_dir)
            if folder.exists():
                target = workloads_for(spec, folder)
                try:
                    if not record.phase.final:
                        target.rollback()
                    if shutdown:
                        target.shutdown()
                finally:
                    target.close()
        if record.phase.final:
            return f"already {record.phase.value}; its local target was stopped"
        said = f"aborted by {by}: {reason}"
        if not record.phase.final:
            store.set_phase(release_id, Phase.ABORTED, said)
            store.record_event(Event(release_id, _now(), "abort", said, actor=by))
            _on_argo(store, record, lambda client, name: client.stop(name, said))
        return said
    finally:
        store.close()


def full_history(app: str | None, db_url: str | None) -> list[dict[str, Any]]:
    """History through the full store (any database; migrates it first if needed)."""
    store = open_store(db_url)
    try:
        records = store.list_releases(app)
    finally:
        store.close()
    return [
        {
            "release": r.release_id,
            "app": r.app,
            "environment": r.environment,
            "version": r.version,
            "strategy": r.strategy,
            "expedited": r.expedited,
            "phase": r.phase.value,
            "reason": r.reason,
            "created_at": r.created_at.isoformat(),
        }
        for r in records
    ]
