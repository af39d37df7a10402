"""The API server's audit log on the bed: its policy, and counts of write requests in it.

The policy logs every request but reads (get, list, watch) and node leases at the Metadata
level, once per request (stage ResponseComplete), as JSON lines. Tests use the counts to prove
that a resumed release repeats no change: "since this moment, user U patched httproutes/web
once".
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})

POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    verbs: [get, list, watch]
  - level: None
    resources:
      - group: coordination.k8s.io
        resources: [leases]
  - level: Metadata
"""


def write_policy(path: Path) -> Path:
    path.write_text(POLICY)
    return path


def utcnow() -> dt.datetime:
    """A moment to count from (the API server stamps events in UTC on this same clock)."""
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class AuditEvent:
    """One request as the audit log records it."""

    received: dt.datetime
    user: str
    verb: str
    resource: str
    """`httproutes`, or `pods/status` for a subresource."""
    api_group: str
    namespace: str
    name: str
    code: int
    user_agent: str

    @property
    def is_write(self) -> bool:
        return self.verb in WRITE_VERBS


def _parse(line: str) -> AuditEvent | None:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError:
        return None  # a line being written right now
    ref = raw.get("objectRef") or {}
    resource = ref.get("resource", "")
    if ref.get("subresource"):
        resource = f"{resource}/{ref['subresource']}"
    return AuditEvent(
        received=dt.datetime.fromisoformat(raw["requestReceivedTimestamp"]),
        user=(raw.get("user") or {}).get("username", ""),
        verb=raw.get("verb", ""),
        resource=resource,
        api_group=ref.get("apiGroup", ""),
        namespace=ref.get("namespace", ""),
        name=ref.get("name", ""),
        code=int((raw.get("responseStatus") or {}).get("code") or 0),
        user_agent=raw.get("userAgent", ""),
    )


class AuditLog:
    """Reads the bed's audit log file (JSON lines, one event per finished request)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def events(self, since: dt.datetime | None = None) -> Iterator[AuditEvent]:
        if not self.path.exists():
            return
        with self.path.open(errors="replace") as f:
            for line in f:
                event = _parse(line)
                if event is not None and (since is None or event.received >= since):
                    yield event

    def writes(
        self,
        since: dt.datetime | None = None,
        *,
        user: str | None = None,
        resource: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        succeeded_only: bool = True,
    ) -> list[AuditEvent]:
        """Write requests (create, update, patch, delete) received at or after `since`."""
        return [
            e
            for e in self.events(since)
            if e.is_write
            and (user is None or e.user == user)
            and (resource is None or e.resource == resource)
            and (namespace is None or e.namespace == namespace)
            and (name is None or e.name == name)
            and (not succeeded_only or 200 <= e.code < 300)
        ]

    def count_writes(
        self,
        since: dt.datetime | None = None,
        *,
        user: str | None = None,
        resource: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        succeeded_only: bool = True,
    ) -> Counter[tuple[str, str, str]]:
        """Write requests since `since`, counted by (user, resource, name)."""
        return Counter(
            (e.user, e.resource, e.name)
            for e in self.writes(
                since,
                user=user,
                resource=resource,
                namespace=namespace,
                name=name,
                succeeded_only=succeeded_only,
            )
        )

    def wait_for(
        self, check: Callable[[AuditLog], bool], timeout: float = 5.0, what: str = "audit events"
    ) -> None:
        """The log is written as each request finishes: give a just-returned call a moment."""
        deadline = time.monotonic() + timeout
        while not check(self):
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.1)
