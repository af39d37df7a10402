"""What every route gets: the service, and who asks (from the bearer token)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gatekeeper.domain.access import Principal
from gatekeeper.domain.errors import InvalidInput
from gatekeeper.engine.service.wiring import Service

# Declares the scheme in the OpenAPI document; the header itself is read below, so that a
# refusal can say exactly what was wrong with it.
_bearer = HTTPBearer(auto_error=False, description="An API token (gkt_...) or an OIDC JWT.")


def service(request: Request) -> Service:
    found: Service = request.app.state.service
    return found


def principal(
    request: Request,
    svc: Annotated[Service, Depends(service)],
    _creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    return svc.releases.authenticate(request.headers.get("authorization"))


ServiceDep = Annotated[Service, Depends(service)]
PrincipalDep = Annotated[Principal, Depends(principal)]


def storable(value: Any, where: str = "body") -> None:
    """Refuse, anywhere in a JSON value, what no database text takes: NUL characters and
    lone UTF-16 surrogates (JSON can carry them as \\uD800 escapes; UTF-8 cannot)."""
    if isinstance(value, str):
        problem = text_problem(value)
        if problem:
            raise InvalidInput(f"{where}: {problem}")
    elif isinstance(value, dict):
        for key, item in value.items():
            storable(key, where)
            storable(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            storable(item, f"{where}.{i}")


def text_problem(value: str) -> str | None:
    if "\x00" in value:
        return "NUL characters are not allowed"
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        return "lone surrogates (\\uD800-\\uDFFF) are not text"
    return None
