"""Who may do what through the API: every endpoint called by every role, against the
table in gatekeeper/domain/access.py; four eyes and the expedited rule on top."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from gatekeeper.domain.release import Phase
from tests.support.service import BACKENDS, ROLE_OF, Harness, database, local_spec, serving

ROLES = list(ROLE_OF)
EVERYONE = set(ROLES)
MANAGERS = {"release-manager", "engineering-lead", "cto", "admin"}
PEOPLE_TO_ASK = ["release-manager", "engineering-lead", "cto"]  # a denial names these
_apps = (f"app{n}" for n in itertools.count())


@pytest.fixture(scope="module", params=BACKENDS)
def gk(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Harness]:
    with database(request.param, tmp_path_factory.mktemp("roles")) as url, serving(url) as h:
        yield h


def fresh(gk: Harness, **extra: Any) -> str:
    """A new queued release of an app of its own, submitted by ci-bot."""
    return str(gk.submit(local_spec("v2", app=next(_apps), **extra))["release_id"])


def promoted(gk: Harness) -> str:
    rid = fresh(gk)
    store = gk.service.store
    for phase in (Phase.PENDING, Phase.RUNNING, Phase.PROMOTED):
        store.set_phase(rid, phase, phase.value)
    return rid


def stalled(gk: Harness) -> str:
    rid = fresh(gk)
    gk.service.store.set_stalled(rid, "GatekeeperError: kubeconfig missing")
    return rid


Call = Callable[[Harness, str], httpx.Response]

# endpoint -> (the call, the roles allowed, the status when allowed, the roles a denial names)
ENDPOINTS: dict[str, tuple[Call, set[str], int, list[str]]] = {
    "list": (lambda gk, who: gk.call("GET", "/api/v1/releases", who), EVERYONE, 200, []),
    "get": (
        lambda gk, who: gk.call("GET", f"/api/v1/releases/{fresh(gk)}", who), EVERYONE, 200, [],
    ),
    "whoami": (lambda gk, who: gk.call("GET", "/api/v1/whoami", who), EVERYONE, 200, []),
    "audit": (lambda gk, who: gk.call("GET", "/api/v1/audit", who), MANAGERS, 200, PEOPLE_TO_ASK),
    "submit": (
        lambda gk, who: gk.call("POST", "/api/v1/releases", who, local_spec(app=next(_apps))),
        {"ci", "admin"}, 201, ["ci"],
    ),
    "approve": (
        lambda gk, who: gk.call(
            "POST",
            f"/api/v1/releases/{fresh(gk, approvals=['promote'])}/steps/approve-promote/approve",
            who, {"comment": "ok"},
        ),
        # A plan's approval step takes its own roles only (strategies/approvals.py).
        {"release-manager"}, 200, PEOPLE_TO_ASK,
    ),
    "reject": (
        lambda gk, who: gk.call(
            "POST",
            f"/api/v1/releases/{fresh(gk, approvals=['promote'])}/steps/approve-promote/reject",
            who, {"comment": "no"},
        ),
        MANAGERS, 200, PEOPLE_TO_ASK,
    ),
    "abort": (
        lambda gk, who: gk.call(
            "POST", f"/api/v1/releases/{fresh(gk)}/abort", who, {"reason": "x"}
        ),
        MANAGERS, 200, PEOPLE_TO_ASK,
    ),
    "retry": (
        lambda gk, who: gk.call("POST", f"/api/v1/releases/{stalled(gk)}/retry", who, {}),
        MANAGERS, 200, PEOPLE_TO_ASK,
    ),
    "rollback": (
        lambda gk, who: gk.call("POST", f"/api/v1/releases/{promoted(gk)}/rollback", who, {}),
        MANAGERS, 201, PEOPLE_TO_ASK,
    ),
    "approve-expedited": (
        lambda gk, who: gk.call(
            "POST",
            f"/api/v1/releases/{fresh(gk, expedited=True, expedited_reason='INC-9')}"
            "/steps/approve-expedited/approve",
            who, {},
        ),
        {"engineering-lead", "cto"}, 200, PEOPLE_TO_ASK,
    ),
}  # fmt: skip


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_every_endpoint_by_every_role(gk: Harness, endpoint: str, role: str) -> None:
    call, allowed, ok, named = ENDPOINTS[endpoint]
    r = call(gk, ROLE_OF[role])
    if role in allowed:
        assert r.status_code == ok, r.text
        return
    assert r.status_code == 403, r.text
    body = r.json()
    assert body["code"] == "forbidden"
    assert body["detail"].startswith(f"{ROLE_OF[role]} may not ")
    if endpoint == "approve-expedited" and role in MANAGERS:
        assert body["rule"] == "expedited"  # a manager, but not one who approves hotfixes
        named = ["engineering-lead", "cto"]
    elif endpoint == "approve" and role in MANAGERS:
        assert body["rule"] == "step-role"  # a manager, but not in the step's roles
        named = ["release-manager"]
    else:
        assert body["rule"] == "role"
    assert body["missing_roles"] == named


def test_no_endpoint_under_api_v1_answers_without_a_token(gk: Harness) -> None:
    rid = fresh(gk)
    for method, path in (
        ("GET", "/api/v1/releases"),
        ("GET", f"/api/v1/releases/{rid}"),
        ("GET", "/api/v1/whoami"),
        ("GET", "/api/v1/audit"),
        ("POST", "/api/v1/releases"),
        ("POST", f"/api/v1/releases/{rid}/steps/approve-x/approve"),
        ("POST", f"/api/v1/releases/{rid}/steps/approve-x/reject"),
        ("POST", f"/api/v1/releases/{rid}/abort"),
        ("POST", f"/api/v1/releases/{rid}/retry"),
        ("POST", f"/api/v1/releases/{rid}/rollback"),
    ):
        r = gk.call(method, path, None, {})
        assert r.status_code == 401, (method, path, r.text)


@pytest.mark.parametrize("submitter", ["carol", "ada"])
def test_four_eyes_the_submitter_may_abort_but_never_approve_or_reject(gk: Harness, submitter):
    spec = local_spec("v2", app=next(_apps), approvals=["promote"])
    rid = gk.submit(spec, who=submitter)["release_id"]
    step = f"/api/v1/releases/{rid}/steps/approve-promote"
    for action in ("approve", "reject"):
        r = gk.call("POST", f"{step}/{action}", submitter, {})
        assert r.status_code == 403, r.text
        assert r.json()["rule"] == "four-eyes"
        assert r.json()["detail"] == (
            f"{submitter} may not {action} {rid}: {submitter} submitted it, and the submitter "
            "of a release may not approve or reject it (four eyes): another person must"
        )
    assert gk.call("POST", f"{step}/approve", "rita", {}).status_code == 200
    assert (
        gk.call("POST", f"/api/v1/releases/{rid}/abort", submitter, {"reason": "x"}).status_code
        == 200
    )


def test_an_expedited_release_must_say_why(gk: Harness) -> None:
    r = gk.call("POST", "/api/v1/releases", "ci-bot", local_spec(app=next(_apps), expedited=True))
    assert r.status_code == 422
    assert "expedited: an expedited release needs expedited_reason" in r.json()["detail"]
