"""What a submission must be before the service takes it, and the revert of a promoted
release: the previous version released again, over the promoted one."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from gatekeeper.domain.errors import InvalidInput
from gatekeeper.domain.plan import Plan
from gatekeeper.domain.release import Phase, ReleaseSpec, parse_release
from gatekeeper.store.base import ReleaseRecord

from ..executor import new_record
from ..runner import validate, with_executor

# An idempotency key: printable ASCII without spaces, as HTTP headers carry it.
KEY = re.compile(r"[\x21-\x7e]{1,200}")
SUBMITTED = "submitted; waiting for the controller's decision"


def spec_hash(spec: ReleaseSpec) -> str:
    """SHA-256 of the spec's canonical JSON: the same spec hashes the same, key order aside."""
    text = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not KEY.fullmatch(key):
        raise InvalidInput(
            "Idempotency-Key: 1 to 200 printable ASCII characters without spaces, "
            f"got {len(key)} characters"
        )
    return key


def accepted_spec(
    data: Any,
    *,
    targets: Iterable[str],
    executor: str,
    argo_configured: bool,
) -> tuple[ReleaseSpec, Plan]:
    """The spec of a submission, as the service runs it, and its plan; InvalidInput naming
    what it cannot take."""
    spec = parse_release(data, source="release")
    if executor == "argo" and spec.target.type == "kubernetes":
        spec = with_executor(spec, "argo")
    allowed = tuple(targets)
    if spec.target.type not in allowed:
        raise InvalidInput(
            f"release {spec.release_id}: target.type {spec.target.type!r} is not allowed by "
            f"this service (controller.targets: {', '.join(allowed)})"
        )
    if isinstance(spec.gates, str) and spec.gates != "default":
        raise InvalidInput(
            f"release {spec.release_id}: gates {spec.gates!r} is a path, read on the server; "
            "send the gate set itself (`gatekeeper submit` puts a gates file in the spec)"
        )
    if spec.executor == "argo" and not argo_configured:
        raise InvalidInput(
            f"release {spec.release_id}: executor argo, but this service has no "
            "executor.argo settings"
        )
    plan, _ = validate(spec)
    return spec, plan


def queued_record(
    spec: ReleaseSpec, submitted_by: str, now: datetime, plan: Plan | None = None
) -> ReleaseRecord:
    if plan is None:
        plan, _ = validate(spec)
    record = new_record(spec, plan, now)
    return replace(record, phase=Phase.QUEUED, reason=SUBMITTED, submitted_by=submitted_by)


def revert_data(record: ReleaseRecord) -> dict[str, Any]:
    """The spec that goes back from promoted ``record`` to the version it replaced: the
    same app, target, strategy and gates, no approvals, not expedited."""
    spec: Mapping[str, Any] = record.spec
    stable: Mapping[str, Any] = spec["stable"]
    data = dict(spec)
    data.update(
        version=stable["version"],
        command=stable.get("command"),
        image=stable.get("image"),
        stable={
            "version": spec["version"],
            "command": spec.get("command"),
            "image": spec.get("image"),
        },
        approvals=[],
        expedited=False,
        expedited_reason=None,
        revert=True,
    )
    return data
