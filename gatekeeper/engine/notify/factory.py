"""Receivers from configuration: each type's module, its secrets read where the config says."""

from __future__ import annotations

import os
from collections.abc import Mapping

from gatekeeper.domain.errors import InvalidInput

from .base import Receiver
from .config import (
    NotifyConfig,
    PagerDutyConfig,
    ReceiverConfig,
    SlackConfig,
    WebhookConfig,
    http_url,
)
from .pagerduty import PagerDutyReceiver
from .slack import SlackReceiver
from .webhook import WebhookReceiver


def build_receiver(config: ReceiverConfig, field: str, environ: Mapping[str, str]) -> Receiver:
    """One receiver; InvalidInput naming ``field`` when a secret cannot be read."""
    name, kinds = config.receiver_name(), config.event_kinds()
    if isinstance(config, SlackConfig):
        if config.url_from is not None:
            url = config.url_from.resolve(f"{field}.url_from", environ)
            try:
                http_url(url)
            except ValueError as e:  # the message leaves the URL (a credential) out
                raise InvalidInput(
                    f"{field}.url_from: the value read is not an http or https URL"
                ) from e
        else:
            assert config.url is not None
            url = config.url
        return SlackReceiver(name=name, url=url, kinds=kinds)
    if isinstance(config, PagerDutyConfig):
        return PagerDutyReceiver(
            name=name,
            routing_key=config.routing_key.resolve(f"{field}.routing_key", environ),
            kinds=kinds,
            url=config.url,
            severity=config.severity,
        )
    if isinstance(config, WebhookConfig):
        secret = config.secret.resolve(f"{field}.secret", environ)
        return WebhookReceiver(name=name, url=config.url, secret=secret.encode(), kinds=kinds)
    raise AssertionError(f"receiver type {config.type!r} has no builder")


def build_receivers(
    config: NotifyConfig,
    *,
    environ: Mapping[str, str] | None = None,
    source: str = "notifications",
) -> list[Receiver]:
    """Every configured receiver, or InvalidInput for the first secret that cannot be read
    (read at start-up, so a missing secret stops the service rather than a notification)."""
    env = os.environ if environ is None else environ
    return [
        build_receiver(r, f"{source}: receivers.{i}", env) for i, r in enumerate(config.receivers)
    ]
