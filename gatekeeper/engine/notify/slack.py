"""Slack incoming webhooks: a JSON message with a plain ``text`` and Block Kit ``blocks``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .base import Outgoing, json_body, json_headers, truncated
from .model import EventKind, Notification

# Slack refuses a section's text over 3,000 characters and a field's over 2,000.
SECTION_LIMIT = 3000
FIELD_LIMIT = 2000

_EMOJI = {
    EventKind.SUBMITTED: ":inbox_tray:",
    EventKind.STARTED: ":arrow_forward:",
    EventKind.STEP_COMPLETED: ":heavy_check_mark:",
    EventKind.APPROVAL_NEEDED: ":raised_hand:",
    EventKind.APPROVED: ":thumbsup:",
    EventKind.REJECTED: ":no_entry:",
    EventKind.PROMOTED: ":white_check_mark:",
    EventKind.ROLLED_BACK: ":rotating_light:",
    EventKind.ABORTED: ":octagonal_sign:",
    EventKind.FAILED: ":x:",
}


def escape(text: str) -> str:
    """Text for Slack's mrkdwn: its three control characters escaped, nothing else."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def message(n: Notification) -> dict[str, Any]:
    """The webhook's JSON: ``text`` is what a phone notification shows, ``blocks`` the
    message in the channel."""
    emoji = _EMOJI[n.kind]
    summary = f"{emoji} {escape(n.headline())}"
    fields = [
        ("Release", n.release_id),
        ("Event", n.kind.value),
        ("App", n.app),
        ("Environment", n.environment),
        ("Version", n.version),
    ]
    if n.step:
        fields.append(("Step", n.step))
    if n.by:
        fields.append(("By", n.by))
    context = (
        f"<!date^{int(n.at.timestamp())}^{{date_short_pretty}} {{time_secs}}|{n.at.isoformat()}>"
    )
    if n.url:
        context += f" · <{n.url}|the release>"
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": truncated(summary, SECTION_LIMIT)}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": truncated(f"*{k}*\n{escape(v)}", FIELD_LIMIT)}
                for k, v in fields
            ],
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
    ]
    return {"text": summary, "blocks": blocks}


@dataclass(frozen=True)
class SlackReceiver:
    """Posts to one Slack incoming webhook (its URL holds the channel's credential)."""

    name: str
    url: str = field(repr=False)
    kinds: frozenset[EventKind]

    def request(self, notification: Notification, now: datetime) -> Outgoing:
        return Outgoing(self.url, json_body(message(notification)), json_headers())
