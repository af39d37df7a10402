"""The Alertmanager block through `gatekeeper serve`, against a real Alertmanager: a firing
critical alert for the app holds its release until resolved; an approved expedited
hotfix starts despite it; an unreadable Alertmanager holds too."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.alertmanager_fixture import LocalAlertmanager, running_alertmanager
from tests.support.prom import free_port
from tests.support.service import Harness, database, local_spec, serving

pytestmark = pytest.mark.integration

SHOP_CRITICAL = {"alertname": "ShopErrors", "app": "shop", "severity": "critical"}


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[LocalAlertmanager]:
    with running_alertmanager(tmp_path / "alertmanager") as server:
        yield server


def policy(url: str) -> dict[str, object]:
    return {"policy": {"alertmanager": {"url": url, "attempts": 1, "timeout": "2s"}}}


def release(gk: Harness, rid: str) -> dict[str, object]:
    found: dict[str, object] = gk.call("GET", f"/api/v1/releases/{rid}", "vera").json()
    return found


def wait_phase(gk: Harness, rid: str, phase: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while release(gk, rid)["phase"] != phase:
        assert time.monotonic() < deadline, release(gk, rid)
        time.sleep(0.05)


def test_a_firing_critical_alert_holds_the_release_until_it_is_resolved(
    alertmanager: LocalAlertmanager, tmp_path: Path
) -> None:
    alertmanager.post(SHOP_CRITICAL)
    with database("sqlite", tmp_path) as url, serving(url, config=policy(alertmanager.url)) as gk:
        rid = gk.submit(local_spec())["release_id"]
        cart = gk.submit(local_spec(app="cart"))["release_id"]
        gk.lead()
        gk.tick()
        held = release(gk, rid)
        assert held["phase"] == "queued"
        assert str(held["reason"]).startswith(
            f'{rid} held: alert ShopErrors{{app="shop", severity="critical"}} is firing for shop'
        )
        wait_phase(gk, cart, "promoted")  # another app's release is not held
        alertmanager.resolve(SHOP_CRITICAL)
        gk.tick()
        wait_phase(gk, rid, "promoted")
        entries = gk.call("GET", f"/api/v1/audit?release={rid}", "ada").json()["entries"]
    causes = [e["detail"]["cause"] for e in entries if e["action"] == "policy-decision"]
    assert causes == ["alert", None]


def test_an_approved_hotfix_starts_despite_the_alert(
    alertmanager: LocalAlertmanager, tmp_path: Path
) -> None:
    alertmanager.post(SHOP_CRITICAL)
    hotfix = local_spec("v2-fix", expedited=True, expedited_reason="INC-7: checkout down")
    with database("sqlite", tmp_path) as url, serving(url, config=policy(alertmanager.url)) as gk:
        rid = gk.submit(hotfix)["release_id"]
        gk.lead()
        gk.tick()
        assert str(release(gk, rid)["reason"]).startswith(f"expedited hotfix {rid} waits")
        approve = f"/api/v1/releases/{rid}/steps/approve-expedited/approve"
        assert gk.call("POST", approve, "leo", {"comment": "go"}).status_code == 200
        gk.tick()
        wait_phase(gk, rid, "promoted")
        entries = gk.call("GET", f"/api/v1/audit?release={rid}", "ada").json()["entries"]
    started = [e["detail"]["reason"] for e in entries if e["action"] == "policy-decision"][-1]
    assert started.startswith(f"approved expedited hotfix {rid} starts despite alert ShopErrors")


def test_an_alertmanager_that_cannot_be_read_holds_the_release(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    with database("sqlite", tmp_path) as url, serving(url, config=policy(down)) as gk:
        rid = gk.submit(local_spec())["release_id"]
        gk.lead()
        gk.tick()
        held = release(gk, rid)
    assert held["phase"] == "queued"
    assert str(held["reason"]).startswith(
        f"{rid} held: the alerts of shop could not be read from Alertmanager at {down}: "
    )
