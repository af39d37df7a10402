"""Where notifications go: the receivers, which events each takes, and how hard to try.

Secrets (a webhook's signing secret, a PagerDuty routing key, a Slack webhook URL) are
never written in the file: each is read from an environment variable or a file.

    notifications:
      receivers:
        - type: slack
          url_from: {env: GATEKEEPER_SLACK_WEBHOOK_URL}
          events: [approval-needed, promoted, rolled-back, aborted, failed]
        - type: pagerduty
          routing_key: {file: /var/run/secrets/gatekeeper/pagerduty-routing-key}
        - type: webhook
          name: deploy-log
          url: https://deploy-log.example.com/hooks/gatekeeper
          secret: {env: GATEKEEPER_WEBHOOK_SECRET}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gatekeeper.domain.durations import Duration, format_duration
from gatekeeper.domain.errors import InvalidInput
from gatekeeper.domain.validation import error_text

from . import pagerduty
from .model import EventKind

NAME = r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"

_TAG = re.compile(r"(receivers\.\d+)\.(?:slack|pagerduty|webhook)\b")

_WORDS = {
    NAME: "a receiver name: a-z, 0-9, '-' and '_', at most 63 characters, starting and "
    "ending with a letter or digit",
    ENV_NAME: "an environment variable's name: letters, digits and '_', not starting with a digit",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _not_inline(value: Any) -> Any:
    if isinstance(value, str):
        raise ValueError(
            "a secret is not written in the configuration: give {env: NAME} (an environment "
            "variable) or {file: PATH} (a file holding it)"
        )
    return value


class SecretRef(_Strict):
    """Where a secret is read: an environment variable or a file (its surrounding
    whitespace, such as a final newline, is dropped)."""

    env: str | None = Field(default=None, pattern=ENV_NAME)
    file: str | None = None

    @model_validator(mode="after")
    def _one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env and file")
        return self

    def resolve(self, field: str, environ: Mapping[str, str]) -> str:
        """The secret; InvalidInput naming ``field`` when it is missing or empty."""
        if self.env is not None:
            value = environ.get(self.env)
            if value is None:
                raise InvalidInput(f"{field}: environment variable {self.env} is not set")
            where = f"environment variable {self.env}"
        else:
            assert self.file is not None
            try:
                value = Path(self.file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise InvalidInput(f"{field}: cannot read {self.file}: {e}") from e
            where = f"file {self.file}"
        value = value.strip()
        if not value:
            raise InvalidInput(f"{field}: {where} is empty")
        return value


Secret = Annotated[SecretRef, BeforeValidator(_not_inline)]


def http_url(value: str) -> str:
    """``value`` when it is an http or https URL with a host; ValueError otherwise."""
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError) as e:
        raise ValueError(f"{value!r} is not a URL: {e}") from e
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"{value!r} is not an http or https URL with a host")
    return value


HttpUrl = Annotated[str, BeforeValidator(lambda v: http_url(v) if isinstance(v, str) else v)]


def _kind(value: Any) -> Any:
    if isinstance(value, str) and value not in set(EventKind):
        raise ValueError(f"{value!r} is not an event: one of {', '.join(EventKind)}")
    return value


Kind = Annotated[EventKind, BeforeValidator(_kind)]


class _Receiver(_Strict):
    type: str
    name: str | None = Field(default=None, pattern=NAME)  # default: the type
    events: tuple[Kind, ...] | None = None  # default: the type's DEFAULT_EVENTS

    def receiver_name(self) -> str:
        return self.name or self.type

    def event_kinds(self) -> frozenset[EventKind]:
        return frozenset(self.events) if self.events is not None else self.default_events()

    def default_events(self) -> frozenset[EventKind]:
        raise NotImplementedError


class SlackConfig(_Receiver):
    """An incoming webhook; its URL is the credential, so it may come from the environment
    or a file (``url_from``) instead of ``url``."""

    type: Literal["slack"]
    url: HttpUrl | None = None
    url_from: Secret | None = None

    @model_validator(mode="after")
    def _one_url(self) -> SlackConfig:
        if (self.url is None) == (self.url_from is None):
            raise ValueError("give exactly one of url and url_from")
        return self

    def default_events(self) -> frozenset[EventKind]:
        return frozenset(EventKind) - {EventKind.STEP_COMPLETED}


class PagerDutyConfig(_Receiver):
    """Events API v2: rolled-back and failed trigger an alert, promoted resolves it."""

    type: Literal["pagerduty"]
    routing_key: Secret
    url: HttpUrl = pagerduty.DEFAULT_URL
    severity: pagerduty.Severity = "critical"

    @field_validator("events")
    @classmethod
    def _sendable(cls, value: tuple[EventKind, ...] | None) -> tuple[EventKind, ...] | None:
        other = sorted(set(value or ()) - pagerduty.KINDS)
        if other:
            raise ValueError(
                f"{', '.join(other)}: PagerDuty takes only {', '.join(sorted(pagerduty.KINDS))}"
            )
        return value

    def default_events(self) -> frozenset[EventKind]:
        return pagerduty.KINDS


class WebhookConfig(_Receiver):
    """Any HTTP endpoint: the notification as JSON, signed with HMAC-SHA256 (see webhook.py
    for how to verify)."""

    type: Literal["webhook"]
    url: HttpUrl
    secret: Secret

    def default_events(self) -> frozenset[EventKind]:
        return frozenset(EventKind)


ReceiverConfig = Annotated[
    SlackConfig | PagerDutyConfig | WebhookConfig, Field(discriminator="type")
]


class NotifyConfig(_Strict):
    """The receivers, and the dispatcher's limits (the same for every receiver)."""

    receivers: tuple[ReceiverConfig, ...] = ()
    queue_size: int = Field(default=1000, ge=1, le=100_000)  # per receiver; then drop oldest
    attempts: int = Field(default=3, ge=1, le=10)
    timeout: Duration = 5.0  # each attempt's connect, read and write
    max_backoff: Duration = 5.0  # the longest wait between attempts

    @field_validator("receivers")
    @classmethod
    def _unique_names(cls, value: tuple[ReceiverConfig, ...]) -> tuple[ReceiverConfig, ...]:
        seen: dict[str, int] = {}
        for i, r in enumerate(value):
            name = r.receiver_name()
            if name in seen:
                raise ValueError(
                    f"receivers {seen[name]} and {i} are both named {name!r}; give each "
                    "receiver of the same type its own name"
                )
            seen[name] = i
        return value

    @field_validator("timeout", "max_backoff")
    @classmethod
    def _positive(cls, value: float) -> float:
        if not 0 < value <= 60:
            raise ValueError(f"{format_duration(value)} is not above 0s and at most 60s")
        return value


def parse_notify_config(data: Any, *, source: str = "notifications") -> NotifyConfig:
    """The notifications section of the service's configuration; InvalidInput naming each bad
    field."""
    if data is None:
        return NotifyConfig()
    if not isinstance(data, dict):
        raise InvalidInput(f"{source}: a mapping, got {type(data).__name__}")
    try:
        return NotifyConfig.model_validate(data)
    except ValidationError as e:
        # A receiver's fields are named by their index, without the type's tag in between.
        raise InvalidInput(_TAG.sub(r"\1", error_text(e, source, _WORDS))) from e
