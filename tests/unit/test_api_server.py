"""The HTTP server answers the API from a bounded pool of worker threads; the liveness
probe is answered on the event loop even while every worker is busy."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from fastapi import FastAPI

from gatekeeper.api import system
from gatekeeper.api.server import ApiServer


def blocking_app(release: threading.Event) -> tuple[FastAPI, dict[str, int]]:
    """An app whose sync endpoint holds its worker until ``release``; counts how many
    hold one at once."""
    app = FastAPI()
    app.include_router(system.router)
    seen = {"now": 0, "most": 0}
    lock = threading.Lock()

    @app.get("/hold")
    def hold() -> dict[str, bool]:
        with lock:
            seen["now"] += 1
            seen["most"] = max(seen["most"], seen["now"])
        try:
            return {"released": release.wait(10)}
        finally:
            with lock:
                seen["now"] -= 1

    return app, seen


def test_requests_beyond_the_worker_threads_wait_their_turn() -> None:
    release = threading.Event()
    app, seen = blocking_app(release)
    server = ApiServer(app, threads=2).start()
    try:
        with ThreadPoolExecutor(6) as pool:
            answers = [pool.submit(httpx.get, f"{server.url}/hold", timeout=20) for _ in range(6)]
            deadline = time.monotonic() + 10
            while seen["now"] < 2:
                assert time.monotonic() < deadline, f"{seen['now']} requests held"
                time.sleep(0.01)
            time.sleep(0.2)  # the four others have reached the server too
            # every worker is busy and four requests wait: the liveness probe still answers
            health = httpx.get(f"{server.url}/healthz", timeout=5)
            assert (health.status_code, health.json()["status"]) == (200, "ok")
            assert seen["now"] == 2
            release.set()
            assert [a.result().json() for a in answers] == [{"released": True}] * 6
        assert seen["most"] == 2
    finally:
        release.set()
        server.stop()
