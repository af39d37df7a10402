"""JSON merge patches (RFC 7386) between an object as read and as wanted: write only the change."""

from __future__ import annotations

from typing import Any

_SAME = object()

# The parts of an object the target ever changes; everything else (status, the server's
# metadata) stays out of a patch.
METADATA_KEYS = ("labels", "annotations", "ownerReferences")


def merge_patch(old: Any, new: Any) -> Any:
    """The merge patch that turns ``old`` into ``new``; None when they are equal.

    Lists are replaced whole (RFC 7386 has no list merge); a key missing from ``new`` is
    deleted with null, so ``new`` itself must hold no nulls.
    """
    diff = _diff(old, new)
    return None if diff is _SAME else diff


def object_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any] | None:
    """The merge patch of the parts the target manages: labels, annotations, owner references
    and the spec. None when nothing differs."""
    return merge_patch(_managed(old), _managed(new))  # type: ignore[no-any-return]


def _managed(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    out: dict[str, Any] = {"metadata": {k: meta[k] for k in METADATA_KEYS if k in meta}}
    if "spec" in obj:
        out["spec"] = obj["spec"]
    return out


def _diff(old: Any, new: Any) -> Any:
    if old == new:
        return _SAME
    if isinstance(old, dict) and isinstance(new, dict):
        out: dict[str, Any] = {}
        for key in sorted(old.keys() - new.keys()):
            out[key] = None
        for key in sorted(new):
            if key not in old:
                out[key] = new[key]
                continue
            d = _diff(old[key], new[key])
            if d is not _SAME:
                out[key] = d
        return out
    return new
