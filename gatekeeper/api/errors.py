"""Errors as HTTP answers: 401 with WWW-Authenticate, 403 naming the missing role, 404,
409, 422 and 503, each an ``ErrorOut`` whose message names the object and the value."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from gatekeeper.domain.access import AccessDenied, AuthenticationFailed
from gatekeeper.domain.errors import Conflict, GatekeeperError, InvalidInput, TemporaryError
from gatekeeper.domain.phases import PhaseConflict
from gatekeeper.engine.service.releases import NotFound

from .models import ErrorOut

log = logging.getLogger("gatekeeper.api")
REALM = 'Bearer realm="gatekeeper"'


def _answer(status: int, code: str, detail: str, **extra: object) -> JSONResponse:
    body = ErrorOut(detail=detail, code=code, **extra)  # type: ignore[arg-type]
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status)


def unauthenticated(detail: str) -> JSONResponse:
    response = _answer(401, "unauthenticated", detail)
    quoted = detail.replace("\\", "\\\\").replace('"', "'")
    challenge = (
        REALM
        if detail.startswith("no credentials")
        else (f'{REALM}, error="invalid_token", error_description="{quoted}"')
    )
    response.headers["WWW-Authenticate"] = challenge
    return response


def _gatekeeper_error(request: Request, e: Exception) -> JSONResponse:
    if isinstance(e, AuthenticationFailed):
        return unauthenticated(str(e))
    if isinstance(e, AccessDenied):
        d = e.decision
        return _answer(
            403, "forbidden", str(e), rule=d.rule.value, missing_roles=[r.value for r in d.missing]
        )
    if isinstance(e, NotFound):
        return _answer(404, "not-found", str(e))
    if isinstance(e, Conflict | PhaseConflict):
        return _answer(409, "conflict", str(e))
    if isinstance(e, InvalidInput):
        return _answer(422, "invalid", str(e))
    if isinstance(e, TemporaryError):
        response = _answer(503, "unavailable", str(e))
        response.headers["Retry-After"] = str(max(1, round(e.delay)))
        return response
    log.error("%s %s: %s: %s", request.method, request.url.path, type(e).__name__, e)
    return _answer(500, "internal", f"{type(e).__name__}: {e}")


def _validation(request: Request, e: Exception) -> JSONResponse:
    assert isinstance(e, RequestValidationError)
    lines = []
    for err in e.errors():
        where = ".".join(str(p) for p in err.get("loc", ()))
        lines.append(f"{where}: {err.get('msg', 'invalid')}")
    return _answer(422, "invalid", "; ".join(lines) or "invalid request")


_HTTP_CODES = {400: "invalid", 404: "not-found", 405: "method-not-allowed"}


def _http(request: Request, e: Exception) -> JSONResponse:
    """Starlette's own refusals (a body that is not JSON, an unknown path) in our shape."""
    assert isinstance(e, HTTPException)
    response = _answer(e.status_code, _HTTP_CODES.get(e.status_code, "error"), str(e.detail))
    for name, value in (e.headers or {}).items():
        response.headers[name] = value
    return response


def _unexpected(request: Request, e: Exception) -> JSONResponse:
    log.exception("%s %s: %s", request.method, request.url.path, type(e).__name__)
    return _answer(500, "internal", f"{type(e).__name__}: {e}")


def install(app: FastAPI) -> None:
    app.add_exception_handler(Exception, _unexpected)
    app.add_exception_handler(GatekeeperError, _gatekeeper_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
