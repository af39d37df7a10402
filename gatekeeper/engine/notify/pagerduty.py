"""PagerDuty Events API v2: a rollback or a failure triggers an alert, a promotion resolves it.

Every event of a release carries the release id as ``dedup_key``, so the trigger of a
rolled-back release and the resolve of its later promotion act on the same alert.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from .base import Outgoing, json_body, json_headers, truncated
from .model import EventKind, Notification

DEFAULT_URL = "https://events.pagerduty.com"
TRIGGERS = frozenset({EventKind.ROLLED_BACK, EventKind.FAILED})
RESOLVES = frozenset({EventKind.PROMOTED})
KINDS = TRIGGERS | RESOLVES
SUMMARY_LIMIT = 1024  # PagerDuty truncates a longer summary

Severity = Literal["critical", "error", "warning", "info"]


def event(n: Notification, routing_key: str, severity: Severity) -> dict[str, Any]:
    """The Events API v2 body for ``n``: trigger for a rollback or failure, resolve for a
    promotion. Raises ValueError for any other event."""
    if n.kind in RESOLVES:
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": n.release_id}
    if n.kind not in TRIGGERS:
        raise ValueError(
            f"pagerduty: event {n.kind.value!r} is neither a trigger "
            f"({', '.join(sorted(TRIGGERS))}) nor a resolve ({', '.join(sorted(RESOLVES))})"
        )
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": n.release_id,
        "client": "Release gatekeeper",
        "payload": {
            "summary": truncated(n.headline(), SUMMARY_LIMIT),
            "source": f"{n.app}/{n.environment}",
            "severity": severity,
            "timestamp": n.at.isoformat(),
            "component": n.app,
            "group": n.environment,
            "class": n.kind.value,
            "custom_details": {
                "release": n.release_id,
                "version": n.version,
                "reason": n.reason,
            },
        },
    }
    if n.url:
        body["client_url"] = n.url
        body["links"] = [{"href": n.url, "text": f"release {n.release_id}"}]
    return body


@dataclass(frozen=True)
class PagerDutyReceiver:
    """Sends to one PagerDuty service through its integration's routing key."""

    name: str
    routing_key: str = field(repr=False)
    kinds: frozenset[EventKind] = KINDS
    url: str = DEFAULT_URL
    severity: Severity = "critical"

    def __post_init__(self) -> None:
        other = self.kinds - KINDS
        if other:
            raise ValueError(
                f"pagerduty receiver {self.name}: events {', '.join(sorted(other))} are not "
                f"sent to PagerDuty; it takes {', '.join(sorted(KINDS))}"
            )

    def request(self, notification: Notification, now: datetime) -> Outgoing:
        body = event(notification, self.routing_key, self.severity)
        return Outgoing(f"{self.url.rstrip('/')}/v2/enqueue", json_body(body), json_headers())
