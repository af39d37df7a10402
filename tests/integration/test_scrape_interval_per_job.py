"""Windows and Mann-Whitney sample intervals against the scrape interval of the app's job.

A real Prometheus with a 1s global interval scrapes the app in a job at 15s and
something else in a job at 30s: the limit is two of the app's 15s, not two of the
global 1s (too low: a 20s window would see one sample) nor two of the largest 30s.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from gatekeeper.domain.errors import InvalidInput
from gates.evaluate import GateEvaluator
from gates.profiles import get_profile
from gates.prometheus import PrometheusProvider
from gates.provider import Subject
from gates.spec import GateSet, parse_gate_set
from tests.support.prom import free_port, need

pytestmark = pytest.mark.integration

HTTP = get_profile("http")
STABLE = Subject("shop", "v1")
APP_METRICS = b'http_requests_total{app="shop",version="v1",code="200"} 42\n'


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        # /metrics is the app; any other path is some other job's target, without its series.
        body = APP_METRICS if self.path == "/metrics" else b"other_up 1\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _config(target: str) -> str:
    return (
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        f"  - job_name: app\n    scrape_interval: 15s\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
        f"  - job_name: slow\n    scrape_interval: 30s\n    metrics_path: /other\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
        f"  - job_name: fast\n    metrics_path: /other\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )


@pytest.fixture(scope="module")
def provider(target: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusProvider]:
    tmp: Path = tmp_path_factory.mktemp("prom-per-job")
    (tmp / "prometheus.yml").write_text(_config(target))
    port = free_port()
    with open(tmp / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(
            [
                need("prometheus"),
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    p = PrometheusProvider(f"http://127.0.0.1:{port}")
    try:
        _wait_for_the_app_series(p, proc, tmp / "prometheus.log")
        yield p
    finally:
        p.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_for_the_app_series(
    p: PrometheusProvider, proc: subprocess.Popen[bytes], log: Path
) -> None:
    """The app's job scrapes every 15s, first at a random offset: up to 15s to wait."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prometheus exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            r = httpx.get(
                f"{p.url}/api/v1/query",
                params={"query": 'http_requests_total{app="shop",version="v1"}'},
                timeout=2,
            )
            if r.status_code == 200 and r.json()["data"]["result"]:
                return
        time.sleep(0.2)
    raise RuntimeError("prometheus did not scrape the app's series within 60s")


def _gates(**gate: Any) -> GateSet:
    return parse_gate_set({"gates": [{"name": "g", "metric": "error_ratio", **gate}]})


def test_the_app_series_is_scraped_by_its_job_at_15s(provider: PrometheusProvider) -> None:
    assert provider.scrape_interval_for(HTTP, STABLE) == 15.0


def test_without_the_app_the_largest_job_interval_is_the_limit(
    provider: PrometheusProvider,
) -> None:
    assert provider.scrape_interval() == 30.0


def test_an_app_with_no_series_gets_the_largest_job_interval(
    provider: PrometheusProvider,
) -> None:
    assert provider.scrape_interval_for(HTTP, Subject("shop", "never-deployed")) == 30.0


def test_a_20s_window_is_refused_citing_the_app_jobs_15s(provider: PrometheusProvider) -> None:
    with pytest.raises(
        InvalidInput,
        match=r"^gate 'g': window 20s is shorter than two scrape intervals \(2 x 15s\)",
    ):
        GateEvaluator(_gates(threshold=0.05, window="20s"), provider, subject=STABLE)


def test_a_mann_whitney_interval_of_20s_is_refused_citing_the_app_jobs_15s(
    provider: PrometheusProvider,
) -> None:
    gates = _gates(kind="mann_whitney", window="10m", interval="20s")
    with pytest.raises(
        InvalidInput,
        match=r"^gate 'g': sample interval 20s is shorter than two scrape intervals \(2 x 15s\)",
    ):
        GateEvaluator(gates, provider, subject=STABLE)


def test_windows_of_two_app_scrapes_pass_though_another_job_scrapes_slower(
    provider: PrometheusProvider,
) -> None:
    # 30s is two of the app's 15s scrapes; two of the slow job's 30s would refuse it.
    gates = parse_gate_set(
        {
            "gates": [
                {"name": "abort", "metric": "error_ratio", "threshold": 0.05, "window": "30s"},
                {
                    "name": "mw",
                    "kind": "mann_whitney",
                    "metric": "error_ratio",
                    "window": "10m",
                    "interval": "30s",
                },
            ]
        }
    )
    GateEvaluator(gates, provider, subject=STABLE)
