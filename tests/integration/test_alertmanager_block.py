"""The alert block against a real Alertmanager: which alerts hold a release, and what
happens when Alertmanager cannot be read."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from gatekeeper.domain.policy import (
    AlertState,
    Decision,
    ReleaseRequest,
    WindowState,
    decide_start,
    parse_policy,
    window_open,
)
from gatekeeper.engine.alertmanager import AlertmanagerClient, filter_matcher
from tests.integration.alertmanager_fixture import LocalAlertmanager, running_alertmanager
from tests.support.prom import free_port

pytestmark = pytest.mark.integration

SHOP_CRITICAL = {"alertname": "ShopErrors", "app": "shop", "severity": "critical"}
SHOP_WARNING = {"alertname": "ShopSlow", "app": "shop", "severity": "warning"}
CART_CRITICAL = {"alertname": "CartDown", "app": "cart", "severity": "critical"}
ODD_VALUE = 'pay "eu", \\ north =~{x}\nsecond line'
ODD_APP = 'we"ird\\app'
ODD_CRITICAL = {"alertname": "OddErrors", "app": ODD_APP, "severity": "critical", "team": ODD_VALUE}
# The same team but for one backslash: a filter that loses its escapes would match it.
NEAR_ODD = {**ODD_CRITICAL, "alertname": "NearOdd", "team": ODD_VALUE.replace("\\", "\\\\")}
NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)  # a Monday; the windows below are open
OPEN: WindowState = window_open(parse_policy({}).for_environment("production"), NOW)


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[LocalAlertmanager]:
    with running_alertmanager(tmp_path / "alertmanager") as server:
        yield server


@pytest.fixture
def firing(alertmanager: LocalAlertmanager) -> LocalAlertmanager:
    for labels in (SHOP_CRITICAL, SHOP_WARNING, CART_CRITICAL, ODD_CRITICAL, NEAR_ODD):
        alertmanager.post(labels)
    return alertmanager


class NoSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def release(
    app: str = "shop", *, expedited: bool = False, approved: bool = False
) -> ReleaseRequest:
    return ReleaseRequest(
        release_id=f"{app}-production-v2",
        app=app,
        environment="production",
        submitted_at=NOW,
        expedited=expedited,
        expedited_approved=approved,
    )


def decide(req: ReleaseRequest, alerts: AlertState) -> Decision:
    return decide_start(req, active=[], queue=[req], window=OPEN, alerts=alerts)


def test_only_the_apps_critical_alert_blocks(firing: LocalAlertmanager) -> None:
    config = parse_policy({"alertmanager": {"url": firing.url}})
    assert config.alertmanager is not None
    with AlertmanagerClient.from_settings(config.alertmanager) as client:
        shop = client.alert_state("shop")
        cart = client.alert_state("cart")
        quiet = client.alert_state("billing")
    assert [a.name for a in shop.alerts] == ["ShopErrors"]  # not the warning
    assert [a.name for a in cart.alerts] == ["CartDown"]
    assert quiet.alerts == () and quiet.known

    held = decide(release("shop"), shop)
    assert (held.action, held.cause) == ("queue", "alert")
    assert held.reason.startswith(
        'shop-production-v2 held: alert ShopErrors{app="shop", severity="critical"} is firing '
        "for shop since "
    )
    assert f"(Alertmanager at {firing.url}); it starts once resolved" in held.reason
    assert "ShopSlow" not in held.reason and "CartDown" not in held.reason
    assert decide(release("billing"), quiet).starts


def test_odd_label_values_are_matched_exactly(firing: LocalAlertmanager) -> None:
    with AlertmanagerClient(firing.url) as client:
        assert sorted(a.name for a in client.firing(ODD_APP)) == ["NearOdd", "OddErrors"]
    matchers = {"severity": "critical", "app": "{app}", "team": ODD_VALUE}
    with AlertmanagerClient(firing.url, matchers=matchers) as client:
        state = client.alert_state(ODD_APP)
        assert client.firing("shop") == ()
    assert [(a.name, a.labels["team"]) for a in state.alerts] == [("OddErrors", ODD_VALUE)]
    held = decide(release("shop").model_copy(update={"app": ODD_APP}), state)
    assert 'team="pay \\"eu\\", \\\\ north =~{x}\\nsecond line"' in held.reason


def test_quoted_filters_select_on_alertmanagers_side(firing: LocalAlertmanager) -> None:
    # The client checks the labels again; this asks Alertmanager alone.
    params = [
        ("filter", filter_matcher("app", ODD_APP)),
        ("filter", filter_matcher("team", ODD_VALUE)),
    ]
    answer = httpx.get(f"{firing.url}/api/v2/alerts", params=tuple(params), timeout=5)
    answer.raise_for_status()
    assert [a["labels"]["alertname"] for a in answer.json()] == ["OddErrors"]


def test_resolved_alert_no_longer_blocks(firing: LocalAlertmanager) -> None:
    with AlertmanagerClient(firing.url) as client:
        assert decide(release("shop"), client.alert_state("shop")).cause == "alert"
        firing.resolve(SHOP_CRITICAL)
        state = client.alert_state("shop")
    assert state.alerts == ()
    decision = decide(release("shop"), state)
    assert decision.starts
    assert decision.reason.endswith("; no alert is firing for shop")


def test_silenced_alert_does_not_block(firing: LocalAlertmanager) -> None:
    firing.silence("alertname", "ShopErrors")
    with AlertmanagerClient(firing.url) as client:
        assert client.alert_state("shop").alerts == ()


def test_approved_hotfix_goes_despite_the_alert(firing: LocalAlertmanager) -> None:
    with AlertmanagerClient(firing.url) as client:
        state = client.alert_state("shop")
    unapproved = decide(release(expedited=True), state)
    assert (unapproved.action, unapproved.cause) == ("queue", "approval")
    hotfix = decide(release(expedited=True, approved=True), state)
    assert hotfix.starts
    assert hotfix.reason.startswith(
        "approved expedited hotfix shop-production-v2 starts despite alert ShopErrors{"
    )


def test_alertmanager_down_holds_the_release_with_the_reason(tmp_path: Path) -> None:
    with running_alertmanager(tmp_path / "alertmanager") as server:
        url = server.url
    sleeps = NoSleep()
    with AlertmanagerClient(url, attempts=3, max_backoff_s=0.05, sleep=sleeps) as client:
        state = client.alert_state("shop")
    assert not state.known
    assert len(sleeps.waits) == 2  # three attempts, two waits between them
    held = decide(release(), state)
    assert (held.action, held.cause) == ("queue", "alerts-unknown")
    assert held.reason.startswith(
        f"shop-production-v2 held: the alerts of shop could not be read from Alertmanager at "
        f"{url}: ConnectError: "
    )
    assert held.reason.endswith("(3 attempts); it does not start while they are unknown")
    hotfix = decide(release(expedited=True, approved=True), state)
    assert hotfix.starts
    assert f"although the alerts of shop could not be read from Alertmanager at {url}" in (
        hotfix.reason
    )


def test_refused_query_is_not_retried_and_holds(alertmanager: LocalAlertmanager) -> None:
    sleeps = NoSleep()
    bad = {"bad-label": "x"}  # a name Alertmanager's matcher parser refuses
    with AlertmanagerClient(alertmanager.url, matchers=bad, sleep=sleeps) as client:
        state = client.alert_state("shop")
    assert sleeps.waits == []
    assert state.error is not None and state.error.startswith("HTTP 400 for filter")
    assert decide(release(), state).cause == "alerts-unknown"


class Failing(ThreadingHTTPServer):
    hits = 0


class Answer503(BaseHTTPRequestHandler):
    server: Failing

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.server.hits += 1
        body = b"overloaded"
        self.send_response(503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_5xx_is_retried_a_bounded_number_of_times() -> None:
    server = Failing(("127.0.0.1", free_port()), Answer503)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with AlertmanagerClient(url, attempts=4, max_backoff_s=0.05) as client:
            state = client.alert_state("shop")
    finally:
        server.shutdown()
        server.server_close()
    assert server.hits == 4
    assert state.error == "HTTP 503: overloaded (4 attempts)"
