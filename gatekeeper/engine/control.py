"""Operator actions on releases in the store: approve, abort, history, plans as tables."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gatekeeper.domain.errors import InvalidInput
from gatekeeper.domain.plan import Plan, WaitForApproval
from gatekeeper.domain.release import Phase, parse_release
from gatekeeper.store.base import Approval, Event
from gatekeeper.store.factory import open_store
from strategies.render import plan_json, plan_rows

__all__ = ["abort_release", "approve", "full_history", "plan_json", "plan_rows"]


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
    finally:
        store.close()


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
