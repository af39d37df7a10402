"""API tokens: issued once, stored hashed, refused when unknown, expired or revoked; the CLI."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gatekeeper.cli.main import app
from gatekeeper.domain.access import AuthenticationFailed, Role, Via
from gatekeeper.domain.errors import InvalidInput
from gatekeeper.engine.auth import (
    TOKEN_PREFIX,
    Authenticator,
    authenticate_token,
    bearer,
    hash_token,
    issue_token,
    revoke_token,
    token_state,
)
from gatekeeper.store.base import TokenRecord
from gatekeeper.store.sql import SqlStore
from tests.support.fakes import FakeClock


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "gatekeeper.db"


@pytest.fixture
def store(db: Path) -> Iterator[SqlStore]:
    opened = SqlStore.open(f"sqlite:///{db}")
    yield opened
    opened.close()


def test_a_token_is_shown_once_and_only_its_hash_is_stored(store: SqlStore, db: Path) -> None:
    issued = issue_token(store, "ci-bot", ["ci"], actor="admin-1")
    assert issued.token.startswith(TOKEN_PREFIX) and len(issued.token) == len(TOKEN_PREFIX) + 43
    assert issued.record.token_hash == hash_token(issued.token)
    raw = sqlite3.connect(db).execute("SELECT * FROM api_tokens").fetchall()
    assert len(raw) == 1
    assert issued.token not in repr(raw)
    assert store.find_token_by_hash(hash_token(issued.token)) == issued.record


def test_two_tokens_never_share_a_secret_or_an_id(store: SqlStore) -> None:
    a = issue_token(store, "ci-bot", ["ci"], actor="admin-1")
    b = issue_token(store, "ci-bot", ["ci"], actor="admin-1")
    assert a.token != b.token and a.record.token_id != b.record.token_id


def test_a_valid_token_authenticates_as_its_principal_and_roles(store: SqlStore) -> None:
    issued = issue_token(store, "alice", ["viewer", "release-manager"], actor="admin-1")
    principal = authenticate_token(store, issued.token)
    assert principal.name == "alice"
    assert principal.roles == {Role.VIEWER, Role.RELEASE_MANAGER}
    assert principal.via is Via.TOKEN


@pytest.mark.parametrize(
    ("presented", "reason"),
    [
        (TOKEN_PREFIX + "x" * 43, "bearer token: unknown token"),
        ("not-a-token", "not a gatekeeper API token"),
    ],
)
def test_an_unknown_token_is_refused(store: SqlStore, presented: str, reason: str) -> None:
    issue_token(store, "alice", ["viewer"], actor="admin-1")
    with pytest.raises(AuthenticationFailed, match=reason):
        authenticate_token(store, presented)


def test_an_expired_token_is_refused_naming_when_it_expired(store: SqlStore) -> None:
    clock = FakeClock()
    issued = issue_token(
        store, "ci-bot", ["ci"], expires_in=timedelta(days=30), actor="admin-1", clock=clock
    )
    clock.sleep(timedelta(days=30).total_seconds() - 1)
    assert authenticate_token(store, issued.token, clock=clock).name == "ci-bot"
    clock.sleep(1)
    id_ = issued.record.token_id
    with pytest.raises(AuthenticationFailed, match=f"token {id_} of ci-bot: expired at 2026-12-20"):
        authenticate_token(store, issued.token, clock=clock)
    assert token_state(issued.record, clock.now()) == "expired"


def test_a_revoked_token_is_refused_and_a_second_revocation_keeps_the_first_time(
    store: SqlStore,
) -> None:
    clock = FakeClock()
    issued = issue_token(store, "ci-bot", ["ci"], actor="admin-1", clock=clock)
    clock.sleep(60)
    first = revoke_token(store, issued.record.token_id, actor="admin-1", clock=clock)
    assert first.revoked_at == clock.now()
    clock.sleep(60)
    again = revoke_token(store, issued.record.token_id, actor="admin-1", clock=clock)
    assert again.revoked_at == first.revoked_at
    with pytest.raises(AuthenticationFailed, match="revoked at 2026-11-20T12:01:00"):
        authenticate_token(store, issued.token, clock=clock)


def test_revoking_an_unknown_token_is_refused(store: SqlStore) -> None:
    with pytest.raises(InvalidInput, match="token 'tok-nope' does not exist"):
        revoke_token(store, "tok-nope", actor="admin-1")


@pytest.mark.parametrize(
    ("principal", "roles", "expires", "message"),
    [
        ("ci-bot", ["boss"], None, "role boss: not a role; roles: viewer, ci, release-manager"),
        ("ci-bot", [], None, "a token needs at least one role"),
        ("  ", ["ci"], None, "principal is empty"),
        ("ci-bot", ["ci"], timedelta(0), "must be in the future"),
    ],
)
def test_bad_token_requests_are_refused_and_nothing_is_stored(
    store: SqlStore,
    principal: str,
    roles: list[str],
    expires: timedelta | None,
    message: str,
) -> None:
    with pytest.raises(InvalidInput, match=message):
        issue_token(store, principal, roles, expires_in=expires, actor="admin-1")
    assert store.list_tokens() == []
    assert store.audit_head().seq == 0


def test_the_store_refuses_a_second_token_with_the_same_id_or_hash(store: SqlStore) -> None:
    issued = issue_token(store, "ci-bot", ["ci"], actor="admin-1")
    same_id = TokenRecord(issued.record.token_id, "x", ("ci",), "f" * 64, issued.record.created_at)
    with pytest.raises(InvalidInput, match="exists already"):
        store.create_token(same_id)
    same_hash = TokenRecord("tok-other", "x", ("ci",), issued.record.token_hash, same_id.created_at)
    with pytest.raises(InvalidInput, match="its hash is token"):
        store.create_token(same_hash)


def test_creating_and_revoking_are_audited_without_the_secret(store: SqlStore) -> None:
    issued = issue_token(store, "ci-bot", ["ci"], actor="admin-1")
    revoke_token(store, issued.record.token_id, actor="admin-2")
    entries = store.audit_entries()
    assert [(e.actor, e.action) for e in entries] == [
        ("admin-1", "token-create"),
        ("admin-2", "token-revoke"),
    ]
    assert entries[0].detail["token_id"] == issued.record.token_id
    assert entries[0].detail["roles"] == ["ci"]
    for entry in entries:
        text = json.dumps(entry.detail)
        assert issued.token not in text and issued.record.token_hash not in text
    assert store.verify_audit().ok


def test_bearer_headers(store: SqlStore) -> None:
    issued = issue_token(store, "ci-bot", ["ci"], actor="admin-1")
    assert bearer(f"Bearer {issued.token}") == issued.token
    assert bearer(f"bearer  {issued.token} ") == issued.token
    for header, reason in [
        (None, "no credentials"),
        ("", "no credentials"),
        (f"Basic {issued.token}", "scheme 'Basic'"),
        ("Bearer", "scheme 'Bearer'"),
    ]:
        with pytest.raises(AuthenticationFailed, match=reason):
            bearer(header)
    auth = Authenticator(store)
    assert auth.authenticate(f"Bearer {issued.token}").name == "ci-bot"
    with pytest.raises(AuthenticationFailed, match="no OIDC issuer is configured"):
        auth.authenticate("Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig")


# The command line


def test_tokens_create_list_revoke_on_the_command_line(db: Path) -> None:
    runner = CliRunner()
    url = f"sqlite:///{db}"
    made = runner.invoke(
        app,
        ["tokens", "create", "--principal", "ci-bot", "--role", "ci", "--expires", "30d",
         "--by", "admin-1", "--db", url, "--json"],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    shown = json.loads(made.stdout)
    assert shown["token"].startswith(TOKEN_PREFIX) and shown["roles"] == ["ci"]

    listed = runner.invoke(app, ["tokens", "list", "--db", url, "--json"])
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.stdout)
    assert (row["id"], row["principal"], row["state"]) == (shown["id"], "ci-bot", "active")
    assert shown["token"] not in listed.stdout

    revoked = runner.invoke(app, ["tokens", "revoke", shown["id"], "--db", url])
    assert revoked.exit_code == 0, revoked.output
    listed = runner.invoke(app, ["tokens", "list", "--db", url, "--json"])
    assert json.loads(listed.stdout)[0]["state"] == "revoked"

    bad = runner.invoke(
        app, ["tokens", "create", "--principal", "x", "--role", "boss", "--db", url]
    )
    assert bad.exit_code == 2
    assert "role boss: not a role" in bad.output
    bad = runner.invoke(
        app, ["tokens", "create", "--principal", "x", "--role", "ci", "--expires", "soon",
              "--db", url],
    )  # fmt: skip
    assert bad.exit_code == 2
    assert "--expires 'soon'" in bad.output
