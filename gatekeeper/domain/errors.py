"""The gatekeeper's own error types.

    GatekeeperError
     ├── InvalidInput          bad spec or argument; names the field, the value and what is allowed
     │    └── Conflict         the request contradicts the store (a key reused with another spec)
     ├── TemporaryError        worth retrying after `delay` seconds (tenacity checks this type)
     │    └── ProviderUnavailable   a metrics source did not answer (connection error, 5xx)
     ├── ProviderError         a metrics source answered with an error that a retry will not fix
     └── StepFailed            a plan step could not reach its goal

Third-party errors are wrapped with ``raise ... from e`` so callers catch ours only.
"""

from __future__ import annotations


class GatekeeperError(Exception):
    """Base of every error the gatekeeper raises on purpose."""


class InvalidInput(GatekeeperError):
    """A spec, file or argument is not valid; nothing was started."""


class Conflict(InvalidInput):
    """The request contradicts what the store holds: an idempotency key or a release id
    given again with another spec. Nothing was written."""


class TemporaryError(GatekeeperError):
    """A failure that a retry after ``delay`` seconds may fix."""

    def __init__(self, message: str, *, delay: float = 1.0) -> None:
        super().__init__(message)
        self.delay = delay


class ProviderUnavailable(TemporaryError):
    """A metrics provider could not be reached or answered 5xx."""


class ProviderError(GatekeeperError):
    """A metrics provider rejected a query (bad PromQL, 4xx)."""


class StepFailed(GatekeeperError):
    """A plan step could not reach its goal."""
