"""What a release leaves on a user's object while it runs: its id, and the original of each part
it changed, written in the same request as the first change.

The original lives on the object itself (annotation ``gatekeeper.dev/original``), so a
resumed or different process restores it exactly, and a crash between two writes never
leaves a change without its original. The first change of a release records it; later
changes keep it. Restoring removes both annotations (a release id that was there before,
from an earlier release, comes back).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .settings import ORIGINAL, RELEASE_ID

Obj = dict[str, Any]
_PRIOR_ID = "release-id"  # in the original record: the release id annotation before this one


def annotations_of(obj: Obj) -> dict[str, str]:
    meta = obj.setdefault("metadata", {})
    found: dict[str, str] = meta.setdefault("annotations", {})
    return found


def original(obj: Obj) -> dict[str, Any] | None:
    """The recorded original of ``obj``'s changed parts, or None when it carries none."""
    text = (obj.get("metadata") or {}).get("annotations", {}).get(ORIGINAL)
    if not text:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def mark(obj: Obj, release_id: str, record: Callable[[], dict[str, Any]]) -> None:
    """Stamp ``obj`` with the release id; on the first change, keep ``record()`` (the parts
    about to change, as they are now) beside it."""
    found = annotations_of(obj)
    if ORIGINAL not in found:
        saved = record()
        saved[_PRIOR_ID] = found.get(RELEASE_ID)
        found[ORIGINAL] = json.dumps(saved, sort_keys=True, separators=(",", ":"))
    found[RELEASE_ID] = release_id


def unmark(obj: Obj, *, keep_release_id: str | None = None) -> dict[str, Any] | None:
    """Remove the marks; return the original record (None when unmarked). The release id
    annotation goes back to what it was, or stays ``keep_release_id`` (a promoted release
    leaves its id on the stable Deployment)."""
    record = original(obj)
    meta = obj.setdefault("metadata", {})
    found: dict[str, str] = meta.get("annotations") or {}
    found.pop(ORIGINAL, None)
    prior = record.get(_PRIOR_ID) if record else found.get(RELEASE_ID)
    if keep_release_id is not None:
        found[RELEASE_ID] = keep_release_id
    elif isinstance(prior, str):
        found[RELEASE_ID] = prior
    else:
        found.pop(RELEASE_ID, None)
    if found:
        meta["annotations"] = found
    else:
        meta.pop("annotations", None)
    return record
