"""The controller lease as a coordination.k8s.io Lease, against an HTTP server that keeps one
Lease with resourceVersions (the real client, real HTTP): one holder at a time, takeovers
count leaseTransitions, a write on a stale read is refused, and each term fences the store."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from gatekeeper.domain.fencing import Deposed, Term
from gatekeeper.engine.service.kube_lease import KubernetesLease
from gatekeeper.store.sql import SqlStore
from gatekeeper.targets.kubernetes.lease import KubernetesLeaseClient
from tests.support.fakes import T0, FakeClock

PATH = "/apis/coordination.k8s.io/v1/namespaces/gk/leases/ctl"


class LeaseServer:
    """One Lease object with the API server's optimistic concurrency."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.lock = threading.Lock()

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        with self.lock:
            if method == "GET":
                return (200, self.lease) if self.lease else (404, {"reason": "NotFound"})
            if method == "POST":
                if self.lease is not None:
                    return 409, {"reason": "AlreadyExists"}
                return 201, self._store(body)
            if method == "PUT":
                sent = body["metadata"].get("resourceVersion")
                if self.lease is None or sent != self.lease["metadata"]["resourceVersion"]:
                    return 409, {"reason": "Conflict"}
                return 200, self._store(body)
        return 405, {}

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        body["metadata"]["resourceVersion"] = str(self.version)
        self.lease = body
        return body


@pytest.fixture
def api() -> Iterator[tuple[LeaseServer, str]]:
    state = LeaseServer()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            status, payload = state.handle(self.command, self.path, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def lease_client(host: str) -> KubernetesLeaseClient:
    configuration = client.Configuration()
    configuration.host = host
    return KubernetesLeaseClient(client.ApiClient(configuration), "gk", "ctl")


def test_one_holder_at_a_time_and_a_takeover_counts_a_transition(api):
    state, host = api
    clock = FakeClock(T0)
    a, b = lease_client(host), lease_client(host)
    try:
        got = a.try_acquire("a", clock.now(), 15)
        assert got is not None and got.new_term
        assert b.try_acquire("b", clock.now(), 15) is None
        clock.t += timedelta(seconds=10)
        assert a.renew("a", clock.now(), 15)
        again = a.try_acquire("a", clock.now(), 15)
        assert again is not None and not again.new_term
        clock.t += timedelta(seconds=16)
        taken = b.try_acquire("b", clock.now(), 15)
        assert taken is not None and taken.new_term and taken.transitions == 1
        assert state.lease is not None and state.lease["spec"]["holderIdentity"] == "b"
        assert not a.renew("a", clock.now(), 15)
        b.release("b")
        assert state.lease["spec"]["holderIdentity"] is None
        assert a.try_acquire("a", clock.now(), 15) is not None
    finally:
        a.close()
        b.close()


def test_a_write_on_a_stale_read_is_refused(api):
    state, host = api
    a = lease_client(host)
    try:
        assert a.try_acquire("a", T0, 15) is not None
        stale = dict(state.lease or {})
        state.handle("PUT", PATH, json.loads(json.dumps(stale)))  # another writer
        assert not a._replace(stale, {**stale["spec"], "holderIdentity": "z"})
    finally:
        a.close()


def test_each_term_advances_the_stores_fence(api, tmp_path: Path):
    _, host = api
    clock = FakeClock(T0)
    with SqlStore.open(f"sqlite:///{tmp_path / 'gk.db'}") as store:
        lease_a = KubernetesLease(lease_client(host), store, "ctl", 15, clock)
        lease_b = KubernetesLease(lease_client(host), store, "ctl", 15, clock)
        try:
            term_a = lease_a.acquire("a")
            assert term_a == Term("ctl", "a", 1)
            assert lease_b.acquire("b") is None
            clock.t += timedelta(seconds=20)
            assert lease_b.acquire("b") == Term("ctl", "b", 2)
            assert not lease_a.renew(term_a)
            with pytest.raises(Deposed):
                store.fenced(term_a, lambda: True).set_stalled("x", None)
        finally:
            lease_a.close()
            lease_b.close()
