"""The configuration of `gatekeeper serve`: every bad field named, the environment's
overrides, and the bootstrap tokens file (stored hashed, never shown)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gatekeeper.cli.main import app
from gatekeeper.domain.errors import InvalidInput
from gatekeeper.engine.auth import Authenticator, hash_token
from gatekeeper.engine.service.config import parse_service_config
from gatekeeper.engine.service.tokens_file import parse_tokens_file, store_tokens
from gatekeeper.engine.service.wiring import argo_settings
from gatekeeper.store.sql import SqlStore

TOKEN = "gkt_" + "a" * 43
OTHER = "gkt_" + "b" * 43


@pytest.mark.parametrize(("data", "message"), [
    ({"bogus": 1}, "config: bogus: is not a known field"),
    ({"server": {"port": 70000}},
     "config: server.port: Input should be less than or equal to 65535"),
    ({"server": {"threads": 0}},
     "config: server.threads: Input should be greater than or equal to 1"),
    ({"lease": {"renew": "20s"}},
     "config: lease: renew 20s must be above 0s and below duration 15s"),
    ({"lease": {"kind": "etcd"}}, "config: lease.kind: Input should be 'database' or 'kubernetes'"),
    ({"executor": {"kind": "argo"}},
     "config: executor: kind argo needs the argo section (server, namespace, ...)"),
    ({"controller": {"targets": ["docker"]}},
     "config: controller.targets.0: Input should be 'kubernetes' or 'local'"),
    ({"prometheus": {"url": "prom:9090"}},
     "config: prometheus.url: 'prom:9090' is not a URL starting with http:// or https://"),
    ({"policy": {"environments": {"production": {"timezone": "Europe/Berlinn"}}}},
     "config: policy.environments.production.timezone: 'Europe/Berlinn' is not an IANA time "
     "zone name"),
    ({"notifications": {"receivers": [{"type": "webhook", "url": "https://x", "secret": "s"}]}},
     "config: notifications.receivers.0.secret: a secret is not written in the "
     "configuration"),
])  # fmt: skip
def test_a_bad_field_is_refused_by_name(data, message):
    with pytest.raises(InvalidInput) as refused:
        parse_service_config(data, environ={})
    assert str(refused.value).startswith(message)


def test_every_field_has_a_default():
    config = parse_service_config(None, environ={})
    assert (config.server.host, config.server.port) == ("127.0.0.1", 8080)
    assert (config.lease.kind, config.lease.duration, config.lease.renew) == ("database", 15, 5)
    assert config.executor.kind == "local" and config.controller.targets == ("kubernetes",)


def test_the_environment_wins_over_the_file():
    data = {"store": {"url": "sqlite:///a.db"}, "prometheus": {"url": "http://a:9090"}}
    env = {"GATEKEEPER_DB_URL": "sqlite:///b.db", "GATEKEEPER_PROMETHEUS_URL": "http://b:9090"}
    config = parse_service_config(data, environ=env)
    assert (config.store.url, config.prometheus.url) == ("sqlite:///b.db", "http://b:9090")


def test_the_argo_token_comes_from_the_environment_or_its_file(tmp_path: Path):
    config = parse_service_config(
        {"executor": {"kind": "argo", "argo": {"server": "https://argo:2746",
                                               "token_file": str(tmp_path / "t")}}},
        environ={},
    )  # fmt: skip
    (tmp_path / "t").write_text("from-file\n")
    argo = config.executor.argo
    from_file = argo_settings(argo, {})
    from_env = argo_settings(argo, {"GATEKEEPER_ARGO_TOKEN": "from-env"})
    assert from_file is not None and from_file.token == "from-file"
    assert from_env is not None and from_env.token == "from-env"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tokens"
    path.write_text(text)
    return path


def test_the_tokens_file_is_stored_hashed_once_and_authenticates(tmp_path: Path):
    path = write(
        tmp_path, f"# bootstrap\n\nci-bot:ci:{TOKEN}\nrita: release-manager ,viewer :{OTHER}\n"
    )
    tokens = parse_tokens_file(path)
    assert [(t.principal, t.roles) for t in tokens] == [
        ("ci-bot", ("ci",)), ("rita", ("viewer", "release-manager")),
    ]  # fmt: skip
    with SqlStore.open(f"sqlite:///{tmp_path / 'gk.db'}") as store:
        assert store_tokens(store, path, tokens) == 2
        assert store_tokens(store, path, tokens) == 0  # a restart adds nothing
        stored = store.list_tokens()
        assert all(TOKEN not in repr(t) and OTHER not in repr(t) for t in stored)
        assert {t.token_hash for t in stored} == {hash_token(TOKEN), hash_token(OTHER)}
        principal = Authenticator(store).authenticate(f"Bearer {OTHER}")
        assert principal.name == "rita"
        entries = store.audit_entries()
        assert [(e.actor, e.action) for e in entries] == [
            ("config:tokens_file", "token-create")
        ] * 2


def test_a_token_given_again_with_other_roles_is_refused(tmp_path: Path):
    with SqlStore.open(f"sqlite:///{tmp_path / 'gk.db'}") as store:
        first = write(tmp_path, f"ci-bot:ci:{TOKEN}\n")
        store_tokens(store, first, parse_tokens_file(first))
        changed = write(tmp_path, f"ci-bot:admin:{TOKEN}\n")
        with pytest.raises(InvalidInput, match=r"line 1: that token is stored already as tok-"):
            store_tokens(store, changed, parse_tokens_file(changed))


@pytest.mark.parametrize(("text", "message"), [
    ("ci-bot:ci\n", "line 1: not principal:role1,role2:token"),
    (f":ci:{TOKEN}\n", "line 1: the principal is empty"),
    (f"ci-bot:pilot:{TOKEN}\n", "line 1: roles 'pilot': pilot not a role; roles: viewer, ci, "),
    ("# x\nci-bot:ci:gkt_short\n", "line 2: the token must be gkt_ and at least 32 more "
     "characters (got 9 characters)"),
])  # fmt: skip
def test_a_bad_tokens_line_is_named_and_never_shows_the_token(tmp_path: Path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(InvalidInput) as refused:
        parse_tokens_file(path)
    assert f"auth.tokens_file {path}: {message}" in str(refused.value)
    assert TOKEN not in str(refused.value) and "gkt_short" not in str(refused.value)


def test_serve_with_a_bad_config_exits_2_naming_the_field(tmp_path: Path):
    config = tmp_path / "gk.yaml"
    config.write_text("lease: {kind: database, duration: 10s, renew: 10s}\n")
    done = CliRunner().invoke(app, ["serve", "--config", str(config)])
    assert done.exit_code == 2
    assert "lease: renew 10s must be above 0s and below duration 10s" in done.stderr
