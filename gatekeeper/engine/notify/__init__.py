"""Notifications of release events: Slack, PagerDuty and signed webhooks, sent in the background.

notifier = Notifier.from_config(parse_notify_config(data), metrics=metrics)
notifier.notify(Notification.of(spec, EventKind.ROLLED_BACK, at=now, reason=reason))
notifier.close(timeout=10)
"""

from __future__ import annotations

from .base import Outgoing, Receiver
from .config import (
    NotifyConfig,
    PagerDutyConfig,
    SecretRef,
    SlackConfig,
    WebhookConfig,
    parse_notify_config,
)
from .dispatcher import Notifier
from .factory import build_receivers
from .model import EventKind, Notification
from .pagerduty import PagerDutyReceiver
from .slack import SlackReceiver
from .webhook import WebhookReceiver, sign, verify_signature

__all__ = [
    "EventKind",
    "Notification",
    "Notifier",
    "NotifyConfig",
    "Outgoing",
    "PagerDutyConfig",
    "PagerDutyReceiver",
    "Receiver",
    "SecretRef",
    "SlackConfig",
    "SlackReceiver",
    "WebhookConfig",
    "WebhookReceiver",
    "build_receivers",
    "parse_notify_config",
    "sign",
    "verify_signature",
]
