"""Authentication: API tokens the gatekeeper issues, and OIDC tokens from an issuer.

API tokens. A token is ``gkt_`` and 43 URL-safe characters from ``secrets`` (256 random
bits); it is shown once, when issued, and the store keeps only its SHA-256. A fast hash
is enough here: with 256 bits of entropy nobody can guess a token from its hash, so the
slow, salted hashes that passwords need add nothing, and no server secret (pepper) has
to be kept and rotated. A presented token is hashed, looked up by that hash, and the
hashes compared again in constant time; expired and revoked tokens are refused.

OIDC. A JWT is verified against the issuer's keys (its JWKS, fetched with httpx from
``jwks_url`` or the issuer's discovery document, cached for ``jwks_ttl_s`` and fetched
again when a token names a key id not in the cache, at most once per
``refetch_interval_s``), with the audience and the issuer checked and ``exp`` required.
Only asymmetric algorithms are accepted. Roles come from a claim (a list or a
space-separated string; a dotted name reaches into an object, as
``realm_access.roles``); names that are not gatekeeper roles are ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx

from gatekeeper.domain.access import AuthenticationFailed, Principal, Role, Via, parse_roles
from gatekeeper.domain.clock import SYSTEM_CLOCK, Clock
from gatekeeper.domain.errors import GatekeeperError, InvalidInput, TemporaryError
from gatekeeper.store.base import Store, TokenRecord
from gatekeeper.store.factory import open_store

from . import audit

if TYPE_CHECKING:
    import jwt

TOKEN_PREFIX = "gkt_"
_TOKEN_BYTES = 32
ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")


# API tokens


@dataclass(frozen=True)
class IssuedToken:
    """A new token: ``token`` is the secret, shown this once; the store has ``record``."""

    token: str
    record: TokenRecord


def hash_token(token: str) -> str:
    """The SHA-256 (hex) the store keeps in place of ``token``."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _roles(values: Iterable[str]) -> tuple[str, ...]:
    known, unknown = parse_roles(values)
    allowed = ", ".join(r.value for r in Role)
    if unknown:
        raise InvalidInput(f"role {', '.join(unknown)}: not a role; roles: {allowed}")
    if not known:
        raise InvalidInput(f"a token needs at least one role; roles: {allowed}")
    return tuple(r.value for r in Role if r in known)


def issue_token(
    store: Store,
    principal: str,
    roles: Iterable[str],
    *,
    expires_in: timedelta | None = None,
    actor: str,
    clock: Clock = SYSTEM_CLOCK,
) -> IssuedToken:
    """Create a token for ``principal`` with ``roles``; recorded in the audit log."""
    name = principal.strip()
    if not name:
        raise InvalidInput("principal is empty: name who the token is for")
    wanted = _roles(roles)
    if expires_in is not None and expires_in <= timedelta(0):
        raise InvalidInput(f"expires in {expires_in}: must be in the future")
    now = clock.now()
    token = TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)
    record = TokenRecord(
        token_id="tok-" + secrets.token_hex(6),
        principal=name,
        roles=wanted,
        token_hash=hash_token(token),
        created_at=now,
        expires_at=None if expires_in is None else now + expires_in,
    )
    store.create_token(record)
    audit.record(store, actor, "token-create", None, _token_detail(record), clock=clock)
    return IssuedToken(token, record)


def _token_detail(record: TokenRecord) -> dict[str, Any]:
    # Never the token nor its hash: the audit log is read more widely than the tokens.
    return {
        "token_id": record.token_id,
        "principal": record.principal,
        "roles": list(record.roles),
        "expires_at": None if record.expires_at is None else record.expires_at.isoformat(),
    }


def revoke_token(
    store: Store, token_id: str, *, actor: str, clock: Clock = SYSTEM_CLOCK
) -> TokenRecord:
    """Revoke a token at once (a second revocation keeps the first time)."""
    record = store.revoke_token(token_id, clock.now())
    audit.record(store, actor, "token-revoke", None, _token_detail(record), clock=clock)
    return record


def token_state(record: TokenRecord, now: datetime) -> str:
    """``active``, ``expired`` or ``revoked``."""
    if record.revoked:
        return "revoked"
    if record.expires_at is not None and record.expires_at <= now:
        return "expired"
    return "active"


def authenticate_token(store: Store, token: str, *, clock: Clock = SYSTEM_CLOCK) -> Principal:
    """The principal of an API token; AuthenticationFailed names why a token is refused."""
    presented = token.strip()
    if not presented.startswith(TOKEN_PREFIX):
        raise AuthenticationFailed(f"bearer token: not a gatekeeper API token ({TOKEN_PREFIX}...)")
    digest = hash_token(presented)
    record = store.find_token_by_hash(digest)
    # The lookup matched on the hash already; comparing again in constant time keeps the
    # decision itself free of timing differences whatever the database does.
    if record is None or not hmac.compare_digest(record.token_hash, digest):
        raise AuthenticationFailed("bearer token: unknown token")
    now = clock.now()
    state = token_state(record, now)
    if state == "revoked" and record.revoked_at is not None:
        raise AuthenticationFailed(
            f"token {record.token_id} of {record.principal}: revoked at "
            f"{record.revoked_at.isoformat()}"
        )
    if state == "expired" and record.expires_at is not None:
        raise AuthenticationFailed(
            f"token {record.token_id} of {record.principal}: expired at "
            f"{record.expires_at.isoformat()} (now {now.isoformat()})"
        )
    known, _ = parse_roles(record.roles)
    return Principal(record.principal, known, Via.TOKEN)


# OIDC


class IssuerUnavailable(TemporaryError):
    """The OIDC issuer's keys could not be fetched; the request cannot be judged now."""


@dataclass(frozen=True)
class OidcSettings:
    issuer: str  # the exact "iss" of the tokens
    audience: str  # the "aud" the tokens must carry
    jwks_url: str | None = None  # None: from {issuer}/.well-known/openid-configuration
    roles_claim: str = "roles"  # a dotted name reaches into objects: realm_access.roles
    name_claim: str = "sub"  # the principal's name: sub, email, preferred_username, ...
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    leeway_s: float = 30.0  # clock skew allowed on exp, nbf and iat
    jwks_ttl_s: float = 300.0
    refetch_interval_s: float = 10.0  # an unknown key id fetches the keys again, this rarely
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        for name in ("issuer", "audience", "roles_claim", "name_claim"):
            if not str(getattr(self, name)).strip():
                raise InvalidInput(f"oidc {name} is empty")
        refused = [a for a in self.algorithms if a not in ASYMMETRIC]
        if refused or not self.algorithms:
            raise InvalidInput(
                f"oidc algorithms {', '.join(refused) or 'none'}: not allowed; "
                f"allowed: {', '.join(ASYMMETRIC)} (asymmetric only)"
            )


def _jwt() -> Any:
    try:
        import jwt
    except ImportError as e:  # the `api` extra is not installed
        raise GatekeeperError(
            "OIDC needs PyJWT with cryptography: pip install 'release-gatekeeper[api]'"
        ) from e
    return jwt


def _claim(claims: Mapping[str, Any], dotted: str) -> Any:
    value: Any = claims
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def roles_from_claim(value: Any) -> frozenset[Role]:
    """Known roles from a list or a space-separated string; anything else gives none."""
    if isinstance(value, str):
        names: list[str] = value.split()
    elif isinstance(value, list | tuple):
        names = [v for v in value if isinstance(v, str)]
    else:
        return frozenset()
    known, _ = parse_roles(names)
    return known


class OidcVerifier:
    """Verifies OIDC JWTs against the issuer's keys; thread-safe, keys cached."""

    def __init__(self, settings: OidcSettings, client: httpx.Client | None = None) -> None:
        self.settings = settings
        self._client = client or httpx.Client(timeout=settings.timeout_s)
        self._own_client = client is None
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[jwt.PyJWK, str | None]] = {}
        self._fetched = float("-inf")  # monotonic time of the last successful fetch
        self._attempted = float("-inf")  # and of the last attempt
        self._failure: IssuerUnavailable | None = None
        self._jwks_url = settings.jwks_url

    def close(self) -> None:
        if self._own_client:
            self._client.close()

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; AuthenticationFailed says why one is refused."""
        pyjwt = _jwt()
        s = self.settings
        try:
            header = pyjwt.get_unverified_header(token)
        except pyjwt.PyJWTError as e:
            raise AuthenticationFailed(f"OIDC token: not a JWT: {e}") from e
        alg = header.get("alg")
        if alg not in s.algorithms:
            raise AuthenticationFailed(
                f"OIDC token: algorithm {alg!r} is not allowed; allowed: {', '.join(s.algorithms)}"
            )
        kid = header.get("kid")
        key, stated = self._key(kid if isinstance(kid, str) else None)
        if stated is not None and stated != alg:
            raise AuthenticationFailed(f"OIDC token: key {kid} is for {stated}, not {alg}")
        try:
            claims: dict[str, Any] = pyjwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=s.audience,
                issuer=s.issuer,
                leeway=s.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except pyjwt.ExpiredSignatureError as e:
            raise AuthenticationFailed(f"OIDC token: expired {self._when(token, 'exp')}") from e
        except pyjwt.InvalidAudienceError as e:
            got = self._unverified(token).get("aud")
            raise AuthenticationFailed(f"OIDC token: audience {got!r} is not {s.audience!r}") from e
        except pyjwt.InvalidIssuerError as e:
            got = self._unverified(token).get("iss")
            raise AuthenticationFailed(f"OIDC token: issuer {got!r} is not {s.issuer!r}") from e
        except pyjwt.InvalidSignatureError as e:
            raise AuthenticationFailed(
                f"OIDC token: signature does not verify with key {kid or '(no kid)'} of {s.issuer}"
            ) from e
        except pyjwt.ImmatureSignatureError as e:
            raise AuthenticationFailed(
                f"OIDC token: not valid before {self._when(token, 'nbf')}"
            ) from e
        except pyjwt.MissingRequiredClaimError as e:
            raise AuthenticationFailed(f"OIDC token: {e}") from e
        except (pyjwt.PyJWTError, ValueError, TypeError) as e:
            raise AuthenticationFailed(f"OIDC token: refused: {e}") from e
        name = _claim(claims, s.name_claim)
        if not isinstance(name, str) or not name.strip():
            raise AuthenticationFailed(f"OIDC token: claim {s.name_claim!r} (the name) is missing")
        return Principal(name, roles_from_claim(_claim(claims, s.roles_claim)), Via.OIDC)

    def _unverified(self, token: str) -> dict[str, Any]:
        # For the message only, after the verification failed.
        try:
            found: dict[str, Any] = _jwt().decode(token, options={"verify_signature": False})
        except Exception:  # noqa: BLE001 (a message detail, never a decision)
            return {}
        return found

    def _when(self, token: str, claim: str) -> str:
        value = self._unverified(token).get(claim)
        if not isinstance(value, int | float):
            return ""
        at = datetime.fromtimestamp(value, UTC).isoformat()
        return f"at {at} (now {datetime.now(UTC).isoformat(timespec='seconds')})"

    def _key(self, kid: str | None) -> tuple[jwt.PyJWK, str | None]:
        """The key ``kid`` names (the only key when no kid), and the alg its JWK states."""
        s = self.settings
        with self._lock:
            now = time.monotonic()
            unknown = kid not in self._keys if kid is not None else len(self._keys) != 1
            stale = now - self._fetched > s.jwks_ttl_s
            if (unknown or stale) and now - self._attempted > s.refetch_interval_s:
                self._attempted = now
                try:
                    self._fetch()
                    self._failure = None
                except IssuerUnavailable as e:
                    self._failure = e
                    # Stale keys are still the issuer's keys: a token signed with one of
                    # them is verified while the issuer cannot be reached.
                    if unknown:
                        raise
            if not self._keys and self._failure is not None:
                raise self._failure
            if kid is None:
                if len(self._keys) == 1:
                    return next(iter(self._keys.values()))
                raise AuthenticationFailed(
                    f"OIDC token: no key id (kid), and {s.issuer} has {len(self._keys)} keys"
                )
            found = self._keys.get(kid)
        if found is None:
            raise AuthenticationFailed(f"OIDC token: key {kid!r} is not one of {s.issuer}'s keys")
        return found

    def _get(self, url: str) -> Any:
        try:
            response = self._client.get(url)
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, json.JSONDecodeError) as e:
            raise IssuerUnavailable(f"OIDC: cannot read {url}: {e}", delay=5.0) from e

    def _fetch(self) -> None:
        pyjwt = _jwt()
        if self._jwks_url is None:
            discovery = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
            found = self._get(discovery)
            url = found.get("jwks_uri") if isinstance(found, dict) else None
            if not isinstance(url, str):
                raise IssuerUnavailable(f"OIDC: {discovery} names no jwks_uri", delay=5.0)
            self._jwks_url = url
        document = self._get(self._jwks_url)
        listed = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(listed, list):
            raise IssuerUnavailable(f"OIDC: {self._jwks_url} has no 'keys' list", delay=5.0)
        keys: dict[str, tuple[jwt.PyJWK, str | None]] = {}
        for index, data in enumerate(listed):
            if not isinstance(data, dict) or data.get("use", "sig") != "sig":
                continue
            try:
                key = pyjwt.PyJWK(data)
            except pyjwt.PyJWTError:
                continue  # a key type this verifier cannot use; the others still count
            stated = data.get("alg")
            keys[str(data.get("kid", f"#{index}"))] = (
                key,
                stated if isinstance(stated, str) else None,
            )
        self._keys = keys
        self._fetched = time.monotonic()


# Either kind of bearer token


class Authenticator:
    """Turns an ``Authorization`` header into a principal: an API token, or an OIDC JWT
    when an issuer is configured."""

    def __init__(
        self, store: Store, oidc: OidcVerifier | None = None, *, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._store = store
        self._oidc = oidc
        self._clock = clock

    def authenticate(self, authorization: str | None) -> Principal:
        token = bearer(authorization)
        if token.startswith(TOKEN_PREFIX):
            return authenticate_token(self._store, token, clock=self._clock)
        if self._oidc is None:
            raise AuthenticationFailed(
                f"bearer token: not a gatekeeper API token ({TOKEN_PREFIX}...), "
                "and no OIDC issuer is configured"
            )
        return self._oidc.verify(token)


def bearer(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer TOKEN`` header."""
    if not authorization or not authorization.strip():
        raise AuthenticationFailed("no credentials: send Authorization: Bearer TOKEN")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed(f"Authorization scheme {scheme!r}: use Bearer TOKEN")
    return token.strip()


# For the command line: open the store at a URL (or the default), act, close.


def create_token_at(
    db_url: str | None,
    principal: str,
    roles: Iterable[str],
    *,
    expires_in: timedelta | None,
    actor: str,
) -> IssuedToken:
    store = open_store(db_url)
    try:
        return issue_token(store, principal, roles, expires_in=expires_in, actor=actor)
    finally:
        store.close()


def list_tokens_at(db_url: str | None) -> list[TokenRecord]:
    store = open_store(db_url)
    try:
        return store.list_tokens()
    finally:
        store.close()


def revoke_token_at(db_url: str | None, token_id: str, *, actor: str) -> TokenRecord:
    store = open_store(db_url)
    try:
        return revoke_token(store, token_id, actor=actor)
    finally:
        store.close()
