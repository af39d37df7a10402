"""The API of `gatekeeper serve`: submitting (idempotent), reading, approving, rejecting,
aborting, retrying and rolling back, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.domain.release import Phase
from tests.support.service import BACKENDS, Harness, database, local_spec, serving


@pytest.fixture(params=BACKENDS)
def gk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    with database(request.param, tmp_path) as url, serving(url) as harness:
        yield harness


def audit_actions(gk: Harness, release_id: str) -> list[tuple[str, str]]:
    r = gk.call("GET", f"/api/v1/audit?release={release_id}&limit=1000", "ada")
    assert r.status_code == 200, r.text
    return [(e["actor"], e["action"]) for e in r.json()["entries"]]


def test_submit_queues_the_release_and_answers_201_with_its_location_and_plan(gk: Harness):
    r = gk.call("POST", "/api/v1/releases", "ci-bot", local_spec(), **{"Idempotency-Key": "b-1"})
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/api/v1/releases/shop-production-v2"
    body = r.json()
    assert (body["release_id"], body["phase"], body["submitted_by"]) == (
        "shop-production-v2", "queued", "ci-bot",
    )  # fmt: skip
    assert [s["name"] for s in body["steps"]] == [
        "deploy", "verify", "shift-50", "analyze-50", "shift-100", "analyze-100", "promote",
    ]  # fmt: skip
    assert {s["status"] for s in body["steps"]} == {"pending"}
    assert [e["kind"] for e in body["events"]] == ["submitted"]
    assert audit_actions(gk, "shop-production-v2") == [("ci-bot", "submit")]


def test_the_same_idempotency_key_returns_the_same_release_never_two(gk: Harness):
    first = gk.call("POST", "/api/v1/releases", "ci-bot", local_spec(), **{"Idempotency-Key": "k"})
    again = gk.call("POST", "/api/v1/releases", "ci-bot", local_spec(), **{"Idempotency-Key": "k"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["release_id"] == first.json()["release_id"]
    listed = gk.call("GET", "/api/v1/releases", "vera").json()["releases"]
    assert [r["release_id"] for r in listed] == ["shop-production-v2"]
    assert audit_actions(gk, "shop-production-v2") == [("ci-bot", "submit")]


def test_a_key_reused_with_another_spec_is_a_conflict_that_writes_nothing(gk: Harness):
    gk.submit(local_spec("v2"), key="k")
    r = gk.call("POST", "/api/v1/releases", "ci-bot", local_spec("v3"), **{"Idempotency-Key": "k"})
    assert r.status_code == 409
    assert r.json()["detail"] == (
        "idempotency key 'k' of ci-bot was used for release 'shop-production-v2' with another "
        "spec; a new spec needs a new key"
    )
    assert gk.call("GET", "/api/v1/releases/shop-production-v3", "vera").status_code == 404


def test_the_same_release_id_with_another_spec_is_a_conflict(gk: Harness):
    gk.submit(local_spec("v2"))
    other = local_spec("v2", strategy={"type": "rolling", "batches": [50, 100]})
    r = gk.call("POST", "/api/v1/releases", "ci-bot", other)
    assert r.status_code == 409
    assert "exists already (queued) with another spec" in r.json()["detail"]


def test_concurrent_submits_with_one_key_make_one_release(gk: Harness):
    import concurrent.futures

    def submit() -> int:
        r = gk.call("POST", "/api/v1/releases", "ci-bot", local_spec(), **{"Idempotency-Key": "c"})
        return r.status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = sorted(pool.map(lambda _: submit(), range(8)))
    assert codes == [200] * 7 + [201]
    assert len(gk.call("GET", "/api/v1/releases", "vera").json()["releases"]) == 1


def test_an_invalid_spec_is_refused_naming_the_field(gk: Harness):
    r = gk.call("POST", "/api/v1/releases", "ci-bot", local_spec(strategy={"type": "canery"}))
    assert r.status_code == 422
    assert r.json()["code"] == "invalid"
    assert "strategy" in r.json()["detail"] and "canery" in r.json()["detail"]


def test_a_gates_path_is_refused_since_it_would_be_read_on_the_server(gk: Harness):
    r = gk.call("POST", "/api/v1/releases", "ci-bot", local_spec(gates="/etc/passwd"))
    assert r.status_code == 422
    assert "gates '/etc/passwd' is a path, read on the server" in r.json()["detail"]


def test_a_target_the_service_does_not_allow_is_refused(tmp_path: Path):
    with (
        database("sqlite", tmp_path) as url,
        serving(url, config={"controller": {"targets": ["kubernetes"]}}) as gk,
    ):
        r = gk.call("POST", "/api/v1/releases", "ci-bot", local_spec())
    assert r.status_code == 422
    assert r.json()["detail"] == (
        "release shop-production-v2: target.type 'local' is not allowed by this service "
        "(controller.targets: kubernetes)"
    )


def test_no_token_is_401_with_a_bearer_challenge(gk: Harness):
    r = gk.call("GET", "/api/v1/releases", None)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="gatekeeper"'
    bad = gk.http.get("/api/v1/releases", headers={"Authorization": "Bearer gkt_nope"})
    assert bad.status_code == 401
    assert bad.headers["www-authenticate"].startswith(
        'Bearer realm="gatekeeper", error="invalid_token", error_description="'
    )


def test_a_denial_names_the_missing_role_and_is_audited(gk: Harness):
    r = gk.call("POST", "/api/v1/releases", "rita", local_spec())
    assert r.status_code == 403
    assert r.json() == {
        "detail": "rita may not submit: needs role ci; has release-manager",
        "code": "forbidden",
        "rule": "role",
        "missing_roles": ["ci"],
    }
    entries = gk.call("GET", "/api/v1/audit", "ada").json()["entries"]
    denials = [
        (e["actor"], e["detail"]["action"]) for e in entries if e["action"] == "access-denied"
    ]
    assert denials == [("rita", "submit")]


def test_an_unknown_release_is_404(gk: Harness):
    r = gk.call("GET", "/api/v1/releases/shop-production-v9", "vera")
    assert r.status_code == 404
    assert r.json()["detail"] == "release 'shop-production-v9' does not exist"


def test_approve_records_who_and_in_which_role_and_the_submitter_may_not(gk: Harness):
    rid = gk.submit(local_spec(approvals=["promote"]), who="carol")["release_id"]
    own = gk.call("POST", f"/api/v1/releases/{rid}/steps/approve-promote/approve", "carol", {})
    assert own.status_code == 403
    assert own.json()["rule"] == "four-eyes"
    r = gk.call(
        "POST", f"/api/v1/releases/{rid}/steps/approve-promote/approve", "rita", {"comment": "ok"}
    )
    assert r.status_code == 200, r.text
    assert [(a["approver"], a["role"], a["comment"]) for a in r.json()["approvals"]] == [
        ("rita", "release-manager", "ok")
    ]
    assert ("rita", "approve") in audit_actions(gk, rid)
    nostep = gk.call("POST", f"/api/v1/releases/{rid}/steps/promote/approve", "rita", {})
    assert nostep.status_code == 404
    assert nostep.json()["detail"] == (
        f"release {rid} has no approval step 'promote'; approval steps: approve-promote"
    )


def test_reject_ends_a_queued_release_and_rolls_a_started_one_back(gk: Harness):
    rid = gk.submit(local_spec(approvals=["promote"]))["release_id"]
    step = f"/api/v1/releases/{rid}/steps/approve-promote"
    r = gk.call("POST", f"{step}/reject", "rita", {"comment": "no"})
    assert r.status_code == 200
    assert (r.json()["phase"], r.json()["reason"]) == (
        "aborted", "approve-promote rejected by rita (release-manager): no",
    )  # fmt: skip
    again = gk.call("POST", f"/api/v1/releases/{rid}/abort", "rita", {"reason": "x"})
    assert again.status_code == 409
    assert again.json()["detail"].startswith(f"release {rid} ended already (aborted: ")
    started = gk.submit(local_spec("v3", approvals=["promote"]))["release_id"]
    for phase in (Phase.PENDING, Phase.RUNNING, Phase.HOLDING):
        gk.service.store.set_phase(started, phase, phase.value)
    r = gk.call("POST", f"/api/v1/releases/{started}/steps/approve-promote/reject", "cora", {})
    assert (r.json()["phase"], r.json()["reason"]) == (
        "rolling_back", "approve-promote rejected by cora (cto)",
    )  # fmt: skip
    assert ("cora", "reject") in audit_actions(gk, started)


def test_abort_needs_a_reason_and_is_recorded(gk: Harness):
    rid = gk.submit(local_spec())["release_id"]
    assert gk.call("POST", f"/api/v1/releases/{rid}/abort", "rita", {}).status_code == 422
    r = gk.call("POST", f"/api/v1/releases/{rid}/abort", "rita", {"reason": "freeze"})
    assert (r.status_code, r.json()["phase"]) == (200, "aborted")
    assert r.json()["reason"] == "aborted by rita: freeze"
    assert ("rita", "abort") in audit_actions(gk, rid)


def test_retry_clears_a_stall_and_is_a_conflict_otherwise(gk: Harness):
    rid = gk.submit(local_spec())["release_id"]
    r = gk.call("POST", f"/api/v1/releases/{rid}/retry", "rita", {})
    assert r.status_code == 409
    assert "is not stalled (it is queued)" in r.json()["detail"]
    gk.service.store.set_stalled(rid, "GatekeeperError: prometheus at x does not answer")
    r = gk.call("POST", f"/api/v1/releases/{rid}/retry", "rita", {"comment": "back up"})
    assert r.status_code == 200
    assert r.json()["stalled"] is None
    assert ("rita", "retry") in audit_actions(gk, rid)


def promote_directly(gk: Harness, rid: str) -> None:
    store = gk.service.store
    store.set_phase(rid, Phase.PENDING, "start", expected=[Phase.QUEUED])
    store.set_phase(rid, Phase.RUNNING, "running")
    store.set_phase(rid, Phase.PROMOTED, "promoted")


def test_rollback_of_a_promoted_release_queues_its_previous_version_once(gk: Harness):
    rid = gk.submit(local_spec("v2"))["release_id"]
    running = gk.call("POST", f"/api/v1/releases/{rid}/rollback", "rita", {})
    assert running.status_code == 409
    promote_directly(gk, rid)
    r = gk.call("POST", f"/api/v1/releases/{rid}/rollback", "rita", {"reason": "slow"})
    assert r.status_code == 201, r.text
    revert = r.json()
    assert revert["release_id"] == "shop-production-v1-revert-of-v2"
    assert (revert["version"], revert["stable_version"], revert["phase"]) == ("v1", "v2", "queued")
    assert revert["spec"]["revert"] is True and revert["spec"]["approvals"] == []
    again = gk.call("POST", f"/api/v1/releases/{rid}/rollback", "rita", {})
    assert (again.status_code, again.json()["release_id"]) == (200, revert["release_id"])
    assert ("rita", "rollback") in audit_actions(gk, rid)


def test_only_the_latest_promoted_release_is_rolled_back(gk: Harness):
    for version in ("v2", "v3"):
        promote_directly(gk, gk.submit(local_spec(version))["release_id"])
    r = gk.call("POST", "/api/v1/releases/shop-production-v2/rollback", "rita", {})
    assert r.status_code == 409
    assert "shop-production-v3 was promoted after it" in r.json()["detail"]


def test_list_filters_by_app_environment_and_phase(gk: Harness):
    gk.submit(local_spec("v2"))
    gk.submit(local_spec("v2", app="cart"))
    gk.submit(local_spec("v2", environment="staging"))

    def ids(query: str) -> list[str]:
        r = gk.call("GET", f"/api/v1/releases{query}", "vera")
        assert r.status_code == 200, r.text
        return sorted(x["release_id"] for x in r.json()["releases"])

    assert ids("?app=shop") == ["shop-production-v2", "shop-staging-v2"]
    assert ids("?environment=staging") == ["shop-staging-v2"]
    assert ids("?phase=promoted") == []
    assert len(ids("?phase=queued&limit=2")) == 2
    assert gk.call("GET", "/api/v1/releases?phase=nope", "vera").status_code == 422


def test_health_readiness_metrics_and_openapi_need_no_token(gk: Harness):
    assert gk.call("GET", "/healthz", None).json() == {"status": "ok", "detail": None}
    assert gk.call("GET", "/readyz", None).status_code == 200
    metrics = gk.call("GET", "/metrics", None)
    assert "gatekeeper_leader 0.0" in metrics.text
    paths = gk.call("GET", "/openapi.json", None).json()["paths"]
    assert "/api/v1/releases/{release_id}/steps/{step}/approve" in paths


def test_whoami_names_the_principal_and_roles(gk: Harness):
    r = gk.call("GET", "/api/v1/whoami", "carol")
    assert r.json() == {"principal": "carol", "roles": ["ci", "release-manager"], "via": "token"}


@pytest.mark.parametrize("text", ["x\\u0000y", "x\\ud800y"], ids=["nul", "lone-surrogate"])
def test_text_no_database_can_store_is_refused_not_a_500(gk: Harness, text: str):
    raw = json.dumps(local_spec(expedited=True))[:-1] + f', "expedited_reason": "{text}"}}'
    r = gk.http.post(
        "/api/v1/releases",
        content=raw,
        headers={**gk.headers("ci-bot"), "Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("release.expedited_reason: ")
