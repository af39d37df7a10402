"""Alertmanager's API v2: the firing alerts that hold an app's release, read through httpx.

Connection errors, timeouts and 5xx are retried with bounded, jittered exponential
backoff (tenacity). When Alertmanager still cannot be read, ``alert_state`` says so
(``AlertState.error``) and the policy holds the release with that reason: an unknown
alert state never lets a release start, except an approved expedited hotfix.

Silenced and inhibited alerts do not hold a release: a person or a rule chose to
quiet them. Alerts not yet processed by Alertmanager's pipeline do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from gatekeeper.domain.errors import ProviderError, ProviderUnavailable
from gatekeeper.domain.policy import (
    DEFAULT_MATCHERS,
    Alert,
    AlertmanagerSettings,
    AlertState,
    quote_label_value,
)

__all__ = [
    "AlertmanagerClient",
    "AlertmanagerError",
    "AlertmanagerUnavailable",
    "filter_matcher",
]

FIRING_STATES = ("active", "unprocessed")


class AlertmanagerUnavailable(ProviderUnavailable):
    """Alertmanager could not be reached, timed out or answered 5xx."""

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(f"alertmanager at {url}: {detail}")
        self.detail = detail


class AlertmanagerError(ProviderError):
    """Alertmanager refused the query (4xx) or answered something that is not alerts."""

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(f"alertmanager at {url}: {detail}")
        self.detail = detail


def filter_matcher(label: str, value: str) -> str:
    """One ``filter`` of the alerts query: an equality matcher with the value quoted.

    The value is in double quotes with backslash, double quote and newline escaped, which
    both Alertmanager's classic matcher parser and its newer UTF-8 one read back exactly.
    """
    return f"{label}={quote_label_value(value)}"


class AlertmanagerClient:
    """Reads the alerts that hold an app's release from one Alertmanager."""

    def __init__(
        self,
        url: str,
        *,
        matchers: Mapping[str, str] = DEFAULT_MATCHERS,
        timeout_s: float = 5.0,
        attempts: int = 3,
        max_backoff_s: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if attempts < 1:
            raise ValueError(f"attempts {attempts}: at least 1")
        self.url = url.rstrip("/")
        self.matchers = dict(matchers)
        self.attempts = attempts
        self._max_backoff_s = max_backoff_s
        self._sleep = sleep
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s)

    @classmethod
    def from_settings(cls, settings: AlertmanagerSettings, **kwargs: Any) -> AlertmanagerClient:
        return cls(
            settings.url,
            matchers=settings.matchers,
            timeout_s=settings.timeout,
            attempts=settings.attempts,
            **kwargs,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AlertmanagerClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def matchers_for(self, app: str) -> dict[str, str]:
        """The configured matchers with ``{app}`` replaced by ``app``."""
        return {label: value.replace("{app}", app) for label, value in self.matchers.items()}

    def firing(self, app: str) -> tuple[Alert, ...]:
        """The alerts firing now that match ``app``'s matchers, not silenced nor inhibited.

        Raises AlertmanagerUnavailable after the retries, AlertmanagerError on a 4xx or an
        answer that is not a list of alerts.
        """
        wanted = self.matchers_for(app)
        retrying = Retrying(
            retry=retry_if_exception_type(AlertmanagerUnavailable),
            stop=stop_after_attempt(self.attempts),
            wait=wait_random_exponential(multiplier=0.1, max=self._max_backoff_s),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return retrying(self._firing_once, wanted)
        except AlertmanagerUnavailable as e:
            tries = "1 attempt" if self.attempts == 1 else f"{self.attempts} attempts"
            raise AlertmanagerUnavailable(self.url, f"{e.detail} ({tries})") from e

    def alert_state(self, app: str) -> AlertState:
        """``firing`` as the policy takes it: an error becomes an unknown state, not a pass."""
        try:
            return AlertState(source=self.url, app=app, alerts=self.firing(app))
        except (AlertmanagerUnavailable, AlertmanagerError) as e:
            return AlertState(source=self.url, app=app, error=e.detail)

    def _firing_once(self, wanted: Mapping[str, str]) -> tuple[Alert, ...]:
        params = [("active", "true"), ("silenced", "false"), ("inhibited", "false")]
        params += [("filter", filter_matcher(label, value)) for label, value in wanted.items()]
        try:
            response = self._http.get("/api/v2/alerts", params=tuple(params))
        except httpx.TransportError as e:  # connection refused, timeouts, broken responses
            raise AlertmanagerUnavailable(self.url, f"{type(e).__name__}: {e}") from e
        if response.status_code >= 500:
            raise AlertmanagerUnavailable(
                self.url, f"HTTP {response.status_code}: {response.text[:200].strip()}"
            )
        if response.status_code != 200:
            raise AlertmanagerError(
                self.url,
                f"HTTP {response.status_code} for filter "
                f"{[value for name, value in params if name == 'filter']}: "
                f"{response.text[:200].strip()}",
            )
        try:
            body = response.json()
        except ValueError as e:
            raise AlertmanagerError(self.url, f"the answer is not JSON: {e}") from e
        if not isinstance(body, list):
            raise AlertmanagerError(
                self.url, f"expected a list of alerts, got {type(body).__name__}"
            )
        alerts = (self._alert(item) for item in body)
        return tuple(
            alert
            for alert in alerts
            # Checked here too: a proxy that drops the filter must not block every app.
            if alert is not None
            and all(alert.labels.get(label) == value for label, value in wanted.items())
        )

    def _alert(self, item: Any) -> Alert | None:
        """The alert in one item of the answer; None when it is not firing."""
        try:
            labels = item["labels"]
            state = item.get("status", {}).get("state", "active")
            starts = item.get("startsAt")
            alert = Alert(
                labels={str(k): str(v) for k, v in labels.items()},
                starts_at=datetime.fromisoformat(starts) if starts else None,
                fingerprint=str(item.get("fingerprint", "")),
            )
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise AlertmanagerError(self.url, f"not an alert: {str(item)[:200]}") from e
        return alert if state in FIRING_STATES else None
