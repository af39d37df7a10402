"""OIDC tokens verified against a JWKS served on loopback, with keys made by the test."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from gatekeeper.domain.access import AuthenticationFailed, Role, Via
from gatekeeper.domain.errors import InvalidInput
from gatekeeper.engine.auth import (
    Authenticator,
    IssuerUnavailable,
    OidcSettings,
    OidcVerifier,
    issue_token,
)
from gatekeeper.store.sql import SqlStore

pytestmark = pytest.mark.integration

AUDIENCE = "gatekeeper"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa_key()


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa_key()


def jwk(private: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    return {**data, "kid": kid, "use": "sig", "alg": "RS256"}


@dataclass
class Issuer:
    """An OIDC issuer on loopback: a discovery document and a JWKS, counting key fetches."""

    keys: list[dict[str, Any]] = field(default_factory=list)
    fetches: int = 0
    url: str = ""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
                if self.path == "/.well-known/openid-configuration":
                    body: dict[str, Any] = {"issuer": issuer.url, "jwks_uri": issuer.url + "/jwks"}
                elif self.path == "/jwks":
                    issuer.fetches += 1
                    body = {"keys": issuer.keys}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def issuer(key: rsa.RSAPrivateKey) -> Iterator[Issuer]:
    found = Issuer(keys=[jwk(key, "k1")])
    server = ThreadingHTTPServer(("127.0.0.1", 0), found.handler())
    found.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield found
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def settings(issuer: Issuer, **overrides: Any) -> OidcSettings:
    values: dict[str, Any] = {
        "issuer": issuer.url,
        "audience": AUDIENCE,
        "jwks_url": issuer.url + "/jwks",
        "leeway_s": 0.0,
    }
    return OidcSettings(**{**values, **overrides})


@pytest.fixture
def verifier(issuer: Issuer) -> Iterator[OidcVerifier]:
    made = OidcVerifier(settings(issuer))
    yield made
    made.close()


def token(
    private: rsa.RSAPrivateKey,
    issuer: Issuer,
    *,
    kid: str | None = "k1",
    ttl: float = 300,
    **claims: Any,
) -> str:
    now = int(time.time())
    body = {"iss": issuer.url, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + ttl}
    body.update(claims)
    headers = {} if kid is None else {"kid": kid}
    return jwt.encode(body, private, algorithm="RS256", headers=headers)


def test_a_valid_token_gives_the_principal_and_its_known_roles(
    verifier: OidcVerifier, issuer: Issuer, key: rsa.RSAPrivateKey
) -> None:
    principal = verifier.verify(
        token(key, issuer, roles=["release-manager", "viewer", "payroll-admin"])
    )
    assert principal.name == "alice"
    assert principal.roles == {Role.RELEASE_MANAGER, Role.VIEWER}  # payroll-admin ignored
    assert principal.via is Via.OIDC


def test_roles_from_a_space_separated_string_and_a_nested_claim(
    issuer: Issuer, key: rsa.RSAPrivateKey
) -> None:
    plain = OidcVerifier(settings(issuer, roles_claim="scope"))
    nested = OidcVerifier(
        settings(issuer, roles_claim="realm_access.roles", name_claim="preferred_username")
    )
    try:
        got = plain.verify(token(key, issuer, scope="openid ci cto"))
        assert got.roles == {Role.CI, Role.CTO}
        got = nested.verify(
            token(key, issuer, preferred_username="bob", realm_access={"roles": ["admin"]})
        )
        assert (got.name, got.roles) == ("bob", frozenset({Role.ADMIN}))
        assert plain.verify(token(key, issuer)).roles == frozenset()  # no claim: no role
    finally:
        plain.close()
        nested.close()


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        pytest.param(
            lambda key, other, issuer: token(other, issuer),
            "signature does not verify with key k1 of http://127.0.0.1:",
            id="wrong-signature",
        ),
        pytest.param(
            lambda key, other, issuer: token(key, issuer, ttl=-60),
            "OIDC token: expired at ",
            id="expired",
        ),
        pytest.param(
            lambda key, other, issuer: token(key, issuer, aud="another-service"),
            "OIDC token: audience 'another-service' is not 'gatekeeper'",
            id="wrong-audience",
        ),
        pytest.param(
            lambda key, other, issuer: token(key, issuer, iss="https://evil.example"),
            "OIDC token: issuer 'https://evil.example' is not 'http://127.0.0.1:",
            id="wrong-issuer",
        ),
        pytest.param(
            lambda key, other, issuer: token(key, issuer, sub=""),
            "claim 'sub' (the name) is missing",
            id="no-name",
        ),
        pytest.param(
            lambda key, other, issuer: jwt.encode(
                {"iss": issuer.url, "aud": AUDIENCE, "sub": "a", "exp": int(time.time()) + 60},
                "a-shared-secret-of-thirty-two-bytes!",
                algorithm="HS256",
                headers={"kid": "k1"},
            ),
            "algorithm 'HS256' is not allowed; allowed: RS256, ES256",
            id="symmetric",
        ),
        pytest.param(
            lambda key, other, issuer: "not.a.jwt",
            "OIDC token: not a JWT",
            id="garbage",
        ),
    ],
)
def test_bad_tokens_are_refused_with_a_clear_reason(
    verifier: OidcVerifier,
    issuer: Issuer,
    key: rsa.RSAPrivateKey,
    other_key: rsa.RSAPrivateKey,
    make: Any,
    reason: str,
) -> None:
    with pytest.raises(AuthenticationFailed, match=re.escape(reason)):
        verifier.verify(make(key, other_key, issuer))


def test_an_expired_token_message_says_when(
    verifier: OidcVerifier, issuer: Issuer, key: rsa.RSAPrivateKey
) -> None:
    with pytest.raises(AuthenticationFailed) as caught:
        verifier.verify(token(key, issuer, ttl=-3600))
    assert "expired at 20" in str(caught.value) and "(now 20" in str(caught.value)


def test_keys_are_cached_and_fetched_again_for_an_unknown_key_id(
    issuer: Issuer, key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey
) -> None:
    verifier = OidcVerifier(settings(issuer, refetch_interval_s=0.0))
    try:
        for _ in range(3):
            verifier.verify(token(key, issuer))
        assert issuer.fetches == 1

        issuer.keys = [jwk(key, "k1"), jwk(other_key, "k2")]  # the issuer rotates its keys
        assert verifier.verify(token(other_key, issuer, kid="k2")).name == "alice"
        assert issuer.fetches == 2

        with pytest.raises(AuthenticationFailed, match="key 'k9' is not one of"):
            verifier.verify(token(other_key, issuer, kid="k9"))
        assert issuer.fetches == 3
    finally:
        verifier.close()


def test_an_unknown_key_id_fetches_at_most_once_per_interval(
    verifier: OidcVerifier, issuer: Issuer, key: rsa.RSAPrivateKey
) -> None:
    verifier.verify(token(key, issuer))
    for _ in range(5):
        with pytest.raises(AuthenticationFailed, match="key 'k9' is not one of"):
            verifier.verify(token(key, issuer, kid="k9"))
    assert issuer.fetches == 1  # the default interval is 10 s


def test_a_token_without_kid_uses_the_only_key(
    verifier: OidcVerifier, issuer: Issuer, key: rsa.RSAPrivateKey
) -> None:
    assert verifier.verify(token(key, issuer, kid=None)).name == "alice"


def test_the_keys_are_found_through_the_discovery_document(
    issuer: Issuer, key: rsa.RSAPrivateKey
) -> None:
    verifier = OidcVerifier(settings(issuer, jwks_url=None))
    try:
        assert verifier.verify(token(key, issuer)).name == "alice"
        assert issuer.fetches == 1
    finally:
        verifier.close()


def test_an_unreachable_issuer_is_a_temporary_error(issuer: Issuer, key: rsa.RSAPrivateKey) -> None:
    verifier = OidcVerifier(settings(issuer, jwks_url=issuer.url + "/missing"))
    try:
        with pytest.raises(IssuerUnavailable, match="OIDC: cannot read http://127.0.0.1:"):
            verifier.verify(token(key, issuer))
    finally:
        verifier.close()


def test_settings_refuse_symmetric_algorithms() -> None:
    with pytest.raises(InvalidInput, match="oidc algorithms HS256: not allowed"):
        OidcSettings(issuer="https://id.example", audience="gk", algorithms=("RS256", "HS256"))


def test_the_authenticator_takes_api_tokens_and_oidc_tokens(
    verifier: OidcVerifier, issuer: Issuer, key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    with SqlStore.open(f"sqlite:///{tmp_path / 'gk.db'}") as store:
        issued = issue_token(store, "ci-bot", ["ci"], actor="admin-1")
        auth = Authenticator(store, verifier)
        assert auth.authenticate(f"Bearer {issued.token}").via is Via.TOKEN
        jwt_principal = auth.authenticate(f"Bearer {token(key, issuer, roles=['cto'])}")
        assert (jwt_principal.name, jwt_principal.via) == ("alice", Via.OIDC)
