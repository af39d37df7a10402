"""The bootstrap tokens file: ``principal:role1,role2:token`` lines, stored hashed at start.

So a Secret (a Helm chart's, say) can hold the first tokens, before anyone could create
one through the API. Blank lines and lines starting with ``#`` are skipped. A token
already stored for the same principal and roles is left as it is; one stored for
another principal or other roles is refused (revoke it first). A token removed from the
file stays valid until revoked: the file only adds. No message ever shows a token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gatekeeper.domain.access import Role, ordered, parse_roles
from gatekeeper.domain.clock import SYSTEM_CLOCK, Clock
from gatekeeper.domain.errors import InvalidInput
from gatekeeper.store.base import Store, TokenRecord

from .. import audit
from ..auth import TOKEN_PREFIX, hash_token

ACTOR = "config:tokens_file"
MIN_SECRET = 32  # characters after the prefix: at least 192 bits of base64


@dataclass(frozen=True)
class BootToken:
    line: int
    principal: str
    roles: tuple[str, ...]
    token_hash: str


def parse_tokens_file(path: Path) -> list[BootToken]:
    """Every token line of the file; InvalidInput naming the file and line of a bad one."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInput(f"auth.tokens_file {path}: cannot read: {e}") from e
    found: list[BootToken] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"auth.tokens_file {path}: line {number}"
        parts = line.split(":", 2)
        if len(parts) != 3:
            raise InvalidInput(f"{where}: not principal:role1,role2:token")
        principal, roles, token = (p.strip() for p in parts)
        if not principal:
            raise InvalidInput(f"{where}: the principal is empty")
        known, unknown = parse_roles(roles.split(","))
        if unknown or not known:
            raise InvalidInput(
                f"{where}: roles {roles!r}: "
                + (f"{', '.join(unknown)} not a role" if unknown else "none given")
                + f"; roles: {', '.join(r.value for r in Role)}"
            )
        wanted = tuple(r.value for r in ordered(known))
        if not token.startswith(TOKEN_PREFIX) or len(token) < len(TOKEN_PREFIX) + MIN_SECRET:
            raise InvalidInput(
                f"{where}: the token must be {TOKEN_PREFIX} and at least {MIN_SECRET} more "
                f"characters (got {len(token)} characters); make one with python -c "
                "'import secrets; print(\"gkt_\" + secrets.token_urlsafe(32))'"
            )
        found.append(BootToken(number, principal, wanted, hash_token(token)))
    return found


def store_tokens(
    store: Store, path: Path, tokens: Sequence[BootToken], *, clock: Clock = SYSTEM_CLOCK
) -> int:
    """Store the tokens not stored yet (audited); returns how many were added."""
    added = 0
    for boot in tokens:
        known = store.find_token_by_hash(boot.token_hash)
        if known is not None:
            if known.principal != boot.principal or tuple(known.roles) != boot.roles:
                raise InvalidInput(
                    f"auth.tokens_file {path}: line {boot.line}: that token is stored already "
                    f"as {known.token_id} of {known.principal} ({', '.join(known.roles)}); "
                    f"revoke it (gatekeeper tokens revoke {known.token_id}) to change it"
                )
            continue
        record = TokenRecord(
            token_id="tok-" + boot.token_hash[:12],
            principal=boot.principal,
            roles=boot.roles,
            token_hash=boot.token_hash,
            created_at=clock.now(),
        )
        store.create_token(record)
        audit.record(
            store,
            ACTOR,
            "token-create",
            None,
            {"token_id": record.token_id, "principal": record.principal, "roles": list(boot.roles)},
            clock=clock,
        )
        added += 1
    return added
