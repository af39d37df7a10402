"""The Prometheus provider against a server that fails: bounded retries, never a pass."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gatekeeper.domain.errors import ProviderError, ProviderUnavailable
from gatekeeper.domain.verdicts import Verdict
from gates.evaluate import GateEvaluator, Release
from gates.profiles import get_profile
from gates.prometheus import PrometheusProvider
from gates.provider import Subject
from gates.spec import default_gates
from tests.support.prom import free_port

pytestmark = pytest.mark.integration


class Failing(ThreadingHTTPServer):
    status = 503
    hits = 0


class Handler(BaseHTTPRequestHandler):
    server: Failing

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.server.hits += 1
        body = b'{"status":"error","error":"down"}'
        self.send_response(self.server.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def failing() -> Iterator[Failing]:
    server = Failing(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _counts(provider: PrometheusProvider) -> None:
    provider.counts(get_profile("http"), [Subject("shop", "v2")], 120, datetime.now(UTC))


def test_5xx_is_retried_a_bounded_number_of_times(failing: Failing):
    provider = PrometheusProvider(
        f"http://127.0.0.1:{failing.server_address[1]}", attempts=4, max_backoff_s=0.05
    )
    with pytest.raises(ProviderUnavailable, match="HTTP Status Code 503"):
        _counts(provider)
    assert failing.hits == 4


def test_a_4xx_is_not_retried(failing: Failing):
    failing.status = 400
    provider = PrometheusProvider(
        f"http://127.0.0.1:{failing.server_address[1]}", attempts=4, max_backoff_s=0.05
    )
    with pytest.raises(ProviderError, match="HTTP Status Code 400"):
        _counts(provider)
    assert failing.hits == 1


def test_connection_refused_is_retried_then_inconclusive_never_pass():
    provider = PrometheusProvider(f"http://127.0.0.1:{free_port()}", attempts=3, max_backoff_s=0.05)
    evaluator = GateEvaluator(default_gates(), provider)
    results = evaluator.evaluate(
        Release(Subject("shop", "v2"), started=datetime.now(UTC) - timedelta(hours=1)),
        datetime.now(UTC),
    )
    assert Verdict.PASS not in {r.verdict for r in results}
    # Gates that query (the others have nothing to judge: no weight, no baseline named).
    queried = [r for r in results if r.verdict is not Verdict.NOT_APPLICABLE]
    assert [r.gate for r in queried] == ["abort", "sustained", "latency", "db-pool"]
    assert {r.verdict for r in queried} == {Verdict.INCONCLUSIVE}
    assert all("measurement error" in r.reason for r in queried)
    assert provider.calls == 3 * (len(queried) + 1)  # + the scrape-interval probe
