"""A generic webhook: the notification as JSON, signed with HMAC-SHA256.

Each request carries::

    X-Gatekeeper-Timestamp: 1763647320              (Unix seconds when it was sent)
    X-Gatekeeper-Signature: sha256=<hex>            (HMAC-SHA256 of "<timestamp>.<body>")
    X-Gatekeeper-Event: rolled-back
    X-Gatekeeper-Delivery: <notification id>        (the same on every retry)

A receiver verifies it with the shared secret: compute HMAC-SHA256 over the timestamp
header's bytes, a ".", and the raw body exactly as received (before any JSON parsing),
compare with the signature's hex in constant time, and refuse a timestamp more than a few
minutes from its own clock (a replayed request). `verify_signature` does all three.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass, field
from datetime import datetime

from .base import Outgoing, json_body, json_headers
from .model import EventKind, Notification

SIGNATURE_HEADER = "X-Gatekeeper-Signature"
TIMESTAMP_HEADER = "X-Gatekeeper-Timestamp"
EVENT_HEADER = "X-Gatekeeper-Event"
DELIVERY_HEADER = "X-Gatekeeper-Delivery"
TOLERANCE_S = 300.0


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC of ``timestamp.body``."""
    mac = hmac.new(_key(secret), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify_signature(
    secret: str | bytes,
    body: bytes,
    timestamp: str,
    signature: str,
    *,
    now: float | None = None,
    tolerance_s: float = TOLERANCE_S,
) -> bool:
    """Whether ``signature`` (the X-Gatekeeper-Signature header) signs ``body`` at
    ``timestamp`` (the X-Gatekeeper-Timestamp header) with ``secret``, and the timestamp is
    within ``tolerance_s`` of ``now`` (default: this machine's clock)."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - sent) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


@dataclass(frozen=True)
class WebhookReceiver:
    """Posts every notification it takes, as JSON, to one URL, signed with ``secret``."""

    name: str
    url: str
    secret: bytes = field(repr=False)
    kinds: frozenset[EventKind] = frozenset(EventKind)

    def request(self, notification: Notification, now: datetime) -> Outgoing:
        body = json_body(notification.model_dump(mode="json"))
        timestamp = str(int(now.timestamp()))
        headers = json_headers(
            **{
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: sign(self.secret, timestamp, body),
                EVENT_HEADER: notification.kind.value,
                DELIVERY_HEADER: notification.id,
            }
        )
        return Outgoing(self.url, body, headers)
