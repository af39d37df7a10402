"""The Kubernetes API layer against a scripted HTTP server (the real client, real HTTP): temporary
errors are retried with backoff, refusals name the verb, the object and the API's reason, a 409
on a write reads again and retries, and every write carries the one field manager."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes import client

from gatekeeper.domain.errors import StepFailed, TemporaryError
from gatekeeper.targets.kubernetes.api import Api, Ref

ROUTE = Ref("HTTPRoute", "team", "shop")
PATH = "/apis/gateway.networking.k8s.io/v1/namespaces/team/httproutes/shop"


class Script:
    """Answers to the requests, in order, per method; and what was asked."""

    def __init__(self) -> None:
        self.answers: dict[str, list[tuple[int, Any]]] = {}
        self.seen: list[dict[str, Any]] = []

    def on(self, method: str, *answers: tuple[int, Any]) -> None:
        self.answers.setdefault(method, []).extend(answers)


@pytest.fixture
def server() -> Iterator[tuple[Script, str]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            script.seen.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "body": body,
                    "content_type": self.headers.get("Content-Type"),
                    "user_agent": self.headers.get("User-Agent"),
                    "authorization": self.headers.get("Authorization"),
                }
            )
            status, payload = script.answers[self.command].pop(0)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PATCH = do_POST = do_DELETE = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield script, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def make_api(host: str, sleeps: list[float]) -> Api:
    configuration = client.Configuration()
    configuration.host = host
    configuration.api_key = {"authorization": "t0ken"}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    return Api(
        client.ApiClient(configuration),
        release_id="shop-production-v2",
        retry_for_s=30,
        sleep=sleeps.append,
    )


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "code": code, "reason": reason, "message": message}


def route(rv: str, weight: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"name": "shop", "namespace": "team", "resourceVersion": rv},
        "spec": {"rules": [{"backendRefs": [{"name": "shop", "weight": weight}]}]},
    }


def test_temporary_errors_are_retried_with_backoff_then_answered(
    server: tuple[Script, str],
) -> None:
    script, host = server
    script.on(
        "GET",
        (503, status(503, "ServiceUnavailable", "etcd leader changed")),
        (429, status(429, "TooManyRequests", "slow down")),
        (200, route("1")),
    )
    sleeps: list[float] = []
    api = make_api(host, sleeps)

    assert api.get(ROUTE) == route("1")
    assert len(sleeps) == 2 and all(0 <= s <= 5 for s in sleeps)
    assert {r["user_agent"] for r in script.seen} == {"gatekeeper (release shop-production-v2)"}
    assert {r["authorization"] for r in script.seen} == {"Bearer t0ken"}


def test_temporary_errors_that_persist_become_a_temporary_error_naming_the_request(
    server: tuple[Script, str],
) -> None:
    script, host = server
    script.on("GET", *[(502, status(502, "BadGateway", "upstream"))] * 20)
    sleeps: list[float] = []
    with pytest.raises(TemporaryError) as failed:
        make_api(host, sleeps).get(ROUTE)
    assert str(failed.value).startswith("get HTTPRoute team/shop: 502 BadGateway: upstream")
    assert len(sleeps) == 11  # 12 attempts


def test_an_api_server_that_does_not_answer_is_a_temporary_error() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps: list[float] = []
    with pytest.raises(TemporaryError, match="get HTTPRoute team/shop: the API server did not"):
        make_api(f"http://127.0.0.1:{port}", sleeps).get(ROUTE)
    assert len(sleeps) == 11


@pytest.mark.parametrize(
    ("code", "reason", "message"),
    [
        (403, "Forbidden", 'httproutes "shop" is forbidden: User "x" cannot patch resource'),
        (422, "Invalid", 'HTTPRoute "shop" is invalid: spec.rules[0].backendRefs[0].weight'),
    ],
)
def test_refusals_fail_the_step_naming_verb_object_and_reason(
    server: tuple[Script, str], code: int, reason: str, message: str
) -> None:
    script, host = server
    script.on("GET", (200, route("1")))
    script.on("PATCH", (code, status(code, reason, message)))
    sleeps: list[float] = []
    with pytest.raises(StepFailed) as failed:
        make_api(host, sleeps).update(ROUTE, lambda r: {**r, "spec": {"rules": []}})
    assert str(failed.value) == f"patch HTTPRoute team/shop: {code} {reason}: {message}"
    assert sleeps == []


def test_a_conflict_reads_again_and_applies_the_change_to_what_is_there_now(
    server: tuple[Script, str],
) -> None:
    script, host = server
    script.on("GET", (200, route("1")), (200, route("2", weight=5)))
    script.on(
        "PATCH",
        (409, status(409, "Conflict", "the object has been modified")),
        (200, route("3", weight=7)),
    )
    api = make_api(host, [])

    def double(r: dict[str, Any]) -> dict[str, Any]:
        r["spec"]["rules"][0]["backendRefs"][0]["weight"] += 2
        return r

    assert api.update(ROUTE, double) == route("3", weight=7)
    patches = [r for r in script.seen if r["method"] == "PATCH"]
    assert [p["body"] for p in patches] == [
        {
            "metadata": {"resourceVersion": "1"},
            "spec": {"rules": [{"backendRefs": [{"name": "shop", "weight": 3}]}]},
        },
        {
            "metadata": {"resourceVersion": "2"},
            "spec": {"rules": [{"backendRefs": [{"name": "shop", "weight": 7}]}]},
        },
    ]
    assert {p["content_type"] for p in patches} == {"application/merge-patch+json"}
    assert {p["path"] for p in patches} == {f"{PATH}?fieldManager=gatekeeper"}
    assert (api.conflicts, api.writes) == (1, 1)


def test_an_update_that_changes_nothing_writes_nothing(server: tuple[Script, str]) -> None:
    script, host = server
    script.on("GET", (200, route("1")))
    api = make_api(host, [])
    assert api.update(ROUTE, lambda r: r) == route("1")
    assert [r["method"] for r in script.seen] == ["GET"]
    assert api.writes == 0


def test_a_missing_object_reads_as_none_and_deletes_as_gone(server: tuple[Script, str]) -> None:
    script, host = server
    script.on("GET", (404, status(404, "NotFound", 'httproutes "shop" not found')))
    script.on("DELETE", (404, status(404, "NotFound", 'httproutes "shop" not found')))
    api = make_api(host, [])
    assert api.get(ROUTE) is None
    assert api.delete(ROUTE) is False
