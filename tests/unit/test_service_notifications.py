"""Notifications from `gatekeeper serve`: a webhook hears a release's events, and a receiver
that never answers delays neither the API nor the release."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.service import local_spec, serving


class Receiver:
    """A webhook endpoint on loopback: records each event kind, or hangs when told."""

    def __init__(self, hang_s: float = 0.0) -> None:
        self.kinds: list[str] = []
        self.hang_s = hang_s
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                time.sleep(receiver.hang_s)
                receiver.kinds.append(f"{body['kind']}:{body['release_id']}")
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,))
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def config(url: str) -> dict[str, Any]:
    hook = {"type": "webhook", "url": url, "secret": {"env": "HOOK_SECRET"}}
    return {"notifications": {"receivers": [hook], "attempts": 1, "timeout": "2s"}}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


def serve(tmp_path: Path, url: str) -> Any:
    return serving(
        f"sqlite:///{tmp_path / 'gk.db'}", config=config(url), environ={"HOOK_SECRET": "s3cret"}
    )


def wait(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_webhook_hears_each_event_of_a_release(tmp_path: Path, receiver: Receiver):
    with serve(tmp_path, receiver.url) as gk:
        hotfix = local_spec("v2", expedited=True, expedited_reason="INC-3")
        rid = gk.submit(hotfix)["release_id"]
        gk.lead()
        gk.tick()
        approve = f"/api/v1/releases/{rid}/steps/approve-expedited/approve"
        assert gk.call("POST", approve, "leo", {}).status_code == 200
        gk.tick()
        wait(lambda: f"promoted:{rid}" in receiver.kinds)
    kinds = [k.split(":")[0] for k in receiver.kinds]
    assert kinds[:4] == ["submitted", "approval-needed", "approved", "started"]
    assert kinds[-1] == "promoted"


def test_a_receiver_that_hangs_delays_neither_the_api_nor_a_release(tmp_path: Path):
    slow = Receiver(hang_s=30.0)
    try:
        with serve(tmp_path, slow.url) as gk:
            started = time.monotonic()
            rid = gk.submit(local_spec())["release_id"]
            gk.lead()
            gk.tick()
            wait(lambda: gk.call("GET", f"/api/v1/releases/{rid}", "vera").json()["final"])
            other = gk.submit(local_spec("v3"))["release_id"]
            assert gk.call("POST", f"/api/v1/releases/{other}/abort", "rita", {"reason": "x"})
            took = time.monotonic() - started
    finally:
        slow.close()
    assert took < 5.0, f"{took:.1f}s"
