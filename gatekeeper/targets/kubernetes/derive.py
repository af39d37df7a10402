"""The candidate Deployment derived from the stable one, and the changes a release makes to
stable: pure functions over objects as the API server returns them.

The candidate is stable's spec (already defaulted by the server, so a read-back compares
equal) with the candidate's image in the app's container, the candidate's version label and
the role label on its pods, and a selector of stable's plus the role label. Deployment
selectors are immutable and stable's is the user's: it also matches the candidate's pods
(they carry every label stable's do), which is harmless because controllers adopt by owner
reference, not by label. The candidate's selector needs the role label, which stable's pods
never carry, so it never matches them; it does not name the version, so the same candidate
Deployment can take the next version in place.

The candidate's own labels are only the gatekeeper's: copying stable's would copy a GitOps
tool's tracking label (Argo CD's ``app.kubernetes.io/instance``), and the tool would prune
the candidate as an object missing from Git.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from . import marks
from .settings import CANDIDATE, MANAGED_BY, RELEASE_ID, ROLE_LABEL, Settings

Obj = dict[str, Any]


def replicas_for(full: int, percent: int) -> int:
    """Whole replicas for ``percent`` of ``full`` (half up); at least one for any share."""
    if percent <= 0:
        return 0
    return max(1, math.floor(full * percent / 100 + 0.5))


def percent_of(replicas: int, full: int) -> int:
    return 0 if full <= 0 else math.floor(100 * replicas / full + 0.5)


# -- reading stable ---------------------------------------------------------------------------


def template_labels(deployment: Obj) -> dict[str, str]:
    meta = deployment.get("spec", {}).get("template", {}).get("metadata") or {}
    labels: dict[str, str] = meta.get("labels") or {}
    return labels


def match_labels(deployment: Obj) -> dict[str, str]:
    labels: dict[str, str] = deployment.get("spec", {}).get("selector", {}).get("matchLabels") or {}
    return labels


def version_of(deployment: Obj, s: Settings) -> str | None:
    return template_labels(deployment).get(s.version_label)


def containers(deployment: Obj) -> list[Obj]:
    found: list[Obj] = deployment["spec"]["template"]["spec"].get("containers") or []
    return found


def app_container(deployment: Obj, s: Settings) -> Obj | None:
    """The container whose image a release changes: the one named in the spec, else the only
    one, else the one named like the app."""
    found = containers(deployment)
    if s.container is not None:
        return next((c for c in found if c.get("name") == s.container), None)
    if len(found) == 1:
        return found[0]
    return next((c for c in found if c.get("name") == s.app), None)


def stable_problems(deployment: Obj, s: Settings) -> list[str]:
    """Why ``deployment`` cannot be released onto, in words; empty when it can."""
    what = f"Deployment {s.namespace}/{s.deployment}"
    problems = []
    selector = deployment.get("spec", {}).get("selector", {})
    keys = set(selector.get("matchLabels") or {}) | {
        e.get("key") for e in selector.get("matchExpressions") or []
    }
    for key in (s.version_label, ROLE_LABEL):
        if key in keys:
            problems.append(
                f"{what}: its selector uses the label {key!r}; selectors are immutable and "
                f"{key!r} changes with every release: select the app's pods without it"
            )
    version = version_of(deployment, s)
    if version is None:
        problems.append(
            f"{what}: its pod template has no {s.version_label!r} label; label the pods "
            f"{s.version_label}: {s.stable_version} (gates and routers tell versions apart by it)"
        )
    elif version not in (s.stable_version, s.candidate_version):
        problems.append(
            f"{what} runs version {version} (label {s.version_label!r}), but the release "
            f"says stable is {s.stable_version}"
        )
    if app_container(deployment, s) is None:
        names = ", ".join(str(c.get("name")) for c in containers(deployment))
        wanted = (
            f"no container named {s.container!r}"
            if s.container
            else f"{len(containers(deployment))} containers and none named {s.app!r}"
        )
        problems.append(f"{what}: {wanted} (containers: {names}); set target.container")
    return problems


# -- the candidate ------------------------------------------------------------------------------


def candidate_from(stable: Obj, s: Settings, replicas: int, version: str, image: str) -> Obj:
    """The candidate Deployment of ``version`` (``image``) for ``stable`` at ``replicas``, owned
    by stable (deleting stable deletes it too)."""
    spec = copy.deepcopy(stable["spec"])
    spec["replicas"] = replicas
    selector = spec["selector"]
    selector["matchLabels"] = {**(selector.get("matchLabels") or {}), ROLE_LABEL: CANDIDATE}
    template = spec["template"]
    meta = template.get("metadata") or {}
    meta.pop("creationTimestamp", None)
    meta["labels"] = {
        **(meta.get("labels") or {}),
        s.version_label: version,
        ROLE_LABEL: CANDIDATE,
    }
    meta["annotations"] = {**(meta.get("annotations") or {}), RELEASE_ID: s.release_id}
    template["metadata"] = meta
    container = app_container({"spec": spec}, s)
    if container is None:  # checked before anything is written
        raise ValueError(f"Deployment {s.namespace}/{s.deployment}: no app container")
    container["image"] = image
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": s.candidate,
            "namespace": s.namespace,
            "labels": {ROLE_LABEL: CANDIDATE, MANAGED_BY: "gatekeeper"},
            "annotations": {RELEASE_ID: s.release_id},
            "ownerReferences": [owner_reference(stable)],
        },
        "spec": spec,
    }


def owner_reference(owner: Obj) -> Obj:
    return {
        "apiVersion": owner.get("apiVersion", "apps/v1"),
        "kind": owner.get("kind", "Deployment"),
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
    }


def candidate_as_wanted(current: Obj, wanted: Obj) -> Obj:
    """``current`` (the candidate as read) with what ``wanted`` sets: its spec, owner, and its
    labels and annotations among those others keep there (the controller's revision)."""
    out = copy.deepcopy(current)
    meta = out["metadata"]
    for key in ("labels", "annotations"):
        meta[key] = {**(meta.get(key) or {}), **wanted["metadata"][key]}
    meta["ownerReferences"] = copy.deepcopy(wanted["metadata"]["ownerReferences"])
    out["spec"] = copy.deepcopy(wanted["spec"])
    return out


# -- changes to stable ------------------------------------------------------------------------


def _record(deployment: Obj, s: Settings) -> dict[str, Any]:
    container = app_container(deployment, s) or {}
    return {
        "replicas": deployment["spec"].get("replicas", 1),
        "image": container.get("image"),
        "container": container.get("name"),
        "version": version_of(deployment, s),
    }


def full_size(deployment: Obj) -> int:
    """Stable's size before the release: as recorded when the release first changed it."""
    record = marks.original(deployment)
    if record is not None and isinstance(record.get("replicas"), int):
        return int(record["replicas"])
    return int(deployment["spec"].get("replicas", 1))


def stable_scaled(deployment: Obj, s: Settings, replicas: int) -> Obj:
    out = copy.deepcopy(deployment)
    if out["spec"].get("replicas") != replicas:
        marks.mark(out, s.release_id, lambda: _record(deployment, s))
        out["spec"]["replicas"] = replicas
    return out


def stable_promoted(deployment: Obj, s: Settings) -> Obj:
    """Stable running the candidate's image and version at full size: promotion in place."""
    out = copy.deepcopy(deployment)
    full = full_size(deployment)
    marks.mark(out, s.release_id, lambda: _record(deployment, s))
    out["spec"]["replicas"] = full
    _set_version(out, s, s.candidate_version, s.candidate_image, None)
    return out


def stable_restored(deployment: Obj, s: Settings) -> Obj:
    """Stable exactly as before the release (its version, image and size), marks removed."""
    out = copy.deepcopy(deployment)
    record = marks.unmark(out)
    if record is None:
        return out
    out["spec"]["replicas"] = record["replicas"]
    _set_version(out, s, record.get("version"), record.get("image"), record.get("container"))
    return out


def stable_settled(deployment: Obj, s: Settings) -> Obj:
    """After promotion: the original record goes; the release id stays, saying who set it."""
    out = copy.deepcopy(deployment)
    marks.unmark(out, keep_release_id=s.release_id)
    return out


def _set_version(
    deployment: Obj, s: Settings, version: str | None, image: str | None, name: str | None
) -> None:
    labels = deployment["spec"]["template"].setdefault("metadata", {}).setdefault("labels", {})
    if version is not None:
        labels[s.version_label] = version
    if name is not None:
        container = next((c for c in containers(deployment) if c.get("name") == name), None)
    else:
        container = app_container(deployment, s)
    if container is not None and image is not None:
        container["image"] = image
