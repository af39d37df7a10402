"""The CLI's client of `gatekeeper serve`: its URL, the bearer token, requests and refusals.

The token comes from GATEKEEPER_TOKEN or a file (``--token-file``), never from the
command line alone, where it would sit in the shell history and the process list.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gatekeeper.domain.errors import GatekeeperError, InvalidInput, TemporaryError

if TYPE_CHECKING:
    import httpx

TOKEN_VAR = "GATEKEEPER_TOKEN"
# Refusals: nothing was written or started (the exit code of invalid input).
REFUSALS = (400, 401, 403, 404, 405, 409, 422)


class Refused(InvalidInput):
    """The server refused the request (4xx); the message is the server's."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


def read_token(token_file: Path | None, environ: dict[str, str] | None = None) -> str | None:
    """The token from ``token_file``, else GATEKEEPER_TOKEN; None when neither gives one."""
    env = os.environ if environ is None else environ
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidInput(f"--token-file {token_file}: cannot read: {e}") from e
        if not token:
            raise InvalidInput(f"--token-file {token_file}: the file is empty")
        return token
    return env.get(TOKEN_VAR, "").strip() or None


class ApiClient:
    """Requests to one server with one token; errors in the gatekeeper's types."""

    def __init__(self, server: str, token: str | None, timeout_s: float = 30.0) -> None:
        import httpx

        if not server.startswith(("http://", "https://")):
            raise InvalidInput(f"--server {server!r}: a URL starting with http:// or https://")
        headers = {"User-Agent": "gatekeeper-cli"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.server = server.rstrip("/")
        self._http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """The response to a request answered 2xx; Refused for 4xx, TemporaryError when the
        server cannot be reached or answers 5xx."""
        import httpx

        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._http.request(method, path, json=json, params=query, headers=headers)
        except httpx.HTTPError as e:
            raise TemporaryError(f"{self.server}: {type(e).__name__}: {e}", delay=2.0) from e
        if response.is_success:
            return response
        message = _message(response)
        if response.status_code in REFUSALS or 400 <= response.status_code < 500:
            raise Refused(response.status_code, message)
        if response.status_code in (502, 503, 504):
            raise TemporaryError(f"{self.server}: {response.status_code}: {message}", delay=2.0)
        raise GatekeeperError(f"{self.server}: {response.status_code}: {message}")

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    detail = body.get("detail") if isinstance(body, dict) else None
    return str(detail) if detail else response.text[:300]
