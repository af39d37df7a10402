"""Kubernetes-safe names and label values made from release ids, versions and step names.

Every function here is deterministic: the same input gives the same name, so a second submit
of a release finds the workflow of the first. Where a value had to change to fit (characters
replaced, or cut to length), a short hash of the raw value is appended, so two different raw
values never share a name.
"""

from __future__ import annotations

import hashlib
import re

MAX_NAME = 63  # a DNS-1123 label; Argo also puts the workflow's name in a label value
HASH_LENGTH = 8
# A label value: empty, or at most 63 of [A-Za-z0-9-_.], starting and ending alphanumeric.
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
# Argo's rule for step and task names.
NODE_NAME = r"^[a-zA-Z0-9][-a-zA-Z0-9]*$"
# A DNS-1123 subdomain: what a workflow's name must be.
DNS_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ALNUM_LOWER = "abcdefghijklmnopqrstuvwxyz0123456789"
ALNUM = ALNUM_LOWER + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def digest(raw: str) -> str:
    """A short, stable hash of ``raw``."""
    return hashlib.sha256(raw.encode()).hexdigest()[:HASH_LENGTH]


def _fit(cleaned: str, raw: str, limit: int, keep: str) -> str:
    """``cleaned`` when it is ``raw`` unchanged and short enough; else cut to leave room for
    '-' and the hash of ``raw``. ``keep`` lists the characters allowed at the ends."""
    if cleaned == raw and len(cleaned) <= limit:
        return cleaned
    stem = cleaned[: limit - HASH_LENGTH - 1]
    while stem and stem[-1] not in keep:
        stem = stem[:-1]
    return f"{stem}-{digest(raw)}" if stem else digest(raw)


def dns_label(raw: str, limit: int = MAX_NAME) -> str:
    """A DNS-1123 label (lower-case alphanumerics and '-', at most ``limit``) for ``raw``."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")
    cleaned = re.sub(r"-{2,}", "-", cleaned)
    return _fit(cleaned, raw, limit, keep=ALNUM_LOWER)


def dns_name(raw: str, limit: int = MAX_NAME) -> str:
    """A DNS-1123 subdomain of at most ``limit`` characters for ``raw``: DNS labels joined
    by '.', so a version such as ``2.1.0`` keeps its dots."""
    parts = (re.sub(r"[^a-z0-9-]+", "-", p).strip("-") for p in raw.lower().split("."))
    cleaned = ".".join(p for p in parts if p)
    return _fit(cleaned, raw, limit, keep=ALNUM_LOWER)


def label_value(raw: str) -> str:
    """A valid label value for ``raw``: unchanged when it is one already."""
    if re.fullmatch(LABEL_VALUE, raw):
        return raw
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", raw)
    cleaned = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", cleaned)
    return _fit(cleaned, raw, MAX_NAME, keep=ALNUM)


def workflow_name(release_id: str) -> str:
    """The workflow of a release: its id when that is a valid name already."""
    return dns_name(release_id)


def node_name(index: int, step: str, suffix: str = "") -> str:
    """A readable step node name such as ``s3-shift-25`` (``s<index>-<step name>``)."""
    return dns_label(f"s{index}-{step}{suffix}")
