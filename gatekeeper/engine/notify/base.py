"""What every receiver is: a name, the events it takes, and the HTTP request for one event.

Receivers only build requests; the dispatcher sends them, with its timeouts and retries,
so each receiver module is pure and its shape is tested without a network.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import httpx

from .model import EventKind, Notification

USER_AGENT = "gatekeeper-notify"


@dataclass(frozen=True)
class Outgoing:
    """One HTTP POST to a receiver."""

    url: str
    body: bytes
    headers: Mapping[str, str]


class Receiver(Protocol):
    @property
    def name(self) -> str:
        """Unique among the receivers; the ``receiver`` label of the notification metric."""
        ...

    @property
    def kinds(self) -> frozenset[EventKind]:
        """The events this receiver is sent; others are never queued for it."""
        ...

    def request(self, notification: Notification, now: datetime) -> Outgoing:
        """The request for ``notification``, built at each attempt (``now`` is its time)."""
        ...


def json_body(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def json_headers(**extra: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "User-Agent": USER_AGENT, **extra}


def where(url: str) -> str:
    """A receiver's URL fit for a log line: scheme and host only (a Slack webhook's path is
    its secret)."""
    u = httpx.URL(url)
    return f"{u.scheme}://{u.host}" + (f":{u.port}" if u.port else "")


def truncated(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
