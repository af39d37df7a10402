"""Every Grafana dashboard query returns data from a real Prometheus scraping a real serve."""

# The scenario (one `gatekeeper serve` on the local target, blue-green releases with time
# compressed 30x), everything through the API. Debian's Prometheus scrapes the service and the
# app's versions (the file_sd file the local target writes) every second, and the service's
# gates query it through a loopback TCP proxy the test can cut:
#
#   v2  good, with an approval before `promote`: approved, promoted
#   v3  bad (half of its requests fail), queued behind v2, then rolled back by the abort gate
#   v4  good, with an approval before `promote`: approved, promoted
#   v5  good, with an approval before `promote`: it waits there while the queries run
#       (a release in progress at its step, its gates' values, an approval waiting). While it
#       waits its gates keep judging; the proxy is cut (connections refused), so their
#       queries fail after their retries (inconclusive results "<gate>: measurement error:
#       ..."), each counted as a metrics provider error; then the proxy is restored and the
#       gates have values again, long before an inconclusive gate would fail closed (1m)
#
# A counter's labelled series is born at its first increment, with the value 1, and
# increase() cannot see that first step; so v4 is promoted and approved after Prometheus has
# seen v2's promotion and approval, the proxy is restored only after Prometheus has seen the
# provider-error counter and then seen it grow, and the rate and ratio panels have an
# increase to show.
# Then every panel's query is sent, as an instant query at one moment two scrapes after the
# last change, the way Grafana would fill it in (see GRAFANA below), and must answer at least
# one series with a number (not NaN).

from __future__ import annotations

import contextlib
import json
import math
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gatekeeper.engine.demo import service_command
from gatekeeper.targets.local.loadgen import LoadGenerator
from gatekeeper.targets.local.target import LocalProcessTarget
from tests.integration.serve_fixture import (
    ServeProcess,
    Tokens,
    release_spec,
    running_serve,
    wait_for,
    write_config,
    write_tokens,
)
from tests.support.prom import free_port, prometheus, wait_for_target_up
from tests.support.tcp_proxy import TcpProxy
from tests.unit.test_monitoring_metric_names import (
    PROMETHEUS_SERIES,
    SUFFIXES,
    alert_expressions,
    dashboard_queries,
    metric_names,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DASHBOARD: dict[str, Any] = json.loads(
    (REPO / "deploy" / "grafana" / "release-gatekeeper.json").read_text()
)
RULES = REPO / "deploy" / "prometheus" / "gatekeeper-rules.yaml"
APP, ENVIRONMENT = "shop", "test"
BLUE_GREEN = {"type": "blue-green", "bake": "2m", "scale_down_delay": "30s"}
# Two of the built-in gates: the abort guard (which rolls the bad version back) and latency.
# The traffic gate is left out: in a bake of a few compressed seconds on a loaded machine, the
# last scrape before the switch can put the old split in its window.
GATES = [
    {"name": "abort", "metric": "error_ratio", "threshold": 0.05, "window": "2m",
     "interval": "250ms", "guard": True, "evidence_window": "15m"},
    {"name": "latency", "metric": "latency", "quantile": 0.95, "threshold": 0.5, "window": "5m",
     "interval": "30s"},
]  # fmt: skip
SCRAPE_S = 1.0

# What Grafana puts in place of its variables when it sends a panel's query:
#   $__range          the dashboard's default time range (`now-7d` to `now`): 7d
#   $__interval       Grafana's step for that range on a panel about 1,000 px wide (7d / 1000,
#                     rounded): 10m, which also spans the whole scenario
#   $__rate_interval  max($__interval + the scrape interval, 4 scrape intervals), rounded: 10m
#   $app, $environment, $gate  the dashboard's default choice, All, sends each one's allValue
#                     `.*`; a second pass picks app shop and environment test, as someone
#                     filtering the dashboard would (`gate` stays All)
# ${datasource} appears only in the panels' data source, never in a query.
_FROM = re.fullmatch(r"now-(\d+[smhdwy])", DASHBOARD["time"]["from"])
assert _FROM is not None and DASHBOARD["time"]["to"] == "now", DASHBOARD["time"]
GRAFANA = {"__range": _FROM.group(1), "__interval": "10m", "__rate_interval": "10m"}
ALL = {"app": ".*", "environment": ".*", "gate": ".*"}
CHOSEN = {"app": APP, "environment": ENVIRONMENT, "gate": ".*"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<match>.*),\s*)?(?P<label>\w+)\s*\)\s*$")
# The counter of gate queries that failed after their retries, by the service's provider.
PROVIDER_ERRORS = 'gatekeeper_metrics_provider_errors_total{provider="prometheus"}'


def grafana(expr: str, chosen: dict[str, str]) -> str:
    """``expr`` with Grafana's variables filled in as it would send it."""
    values = {**GRAFANA, **chosen}

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in values, f"no value for Grafana's ${name} in {expr!r}"
        return values[name]

    return _VARIABLE.sub(value, expr)


# -- a webhook receiver, so the notifications panel has a receiver to show ------------------------


class _Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Ok)
        self.received = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Ok(BaseHTTPRequestHandler):
    server: _Receiver

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.received += 1
        self.send_response(204)
        self.end_headers()


@contextlib.contextmanager
def webhook_receiver() -> Iterator[_Receiver]:
    server = _Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# -- the service's API and Prometheus's --------------------------------------------------------


@dataclass
class Api:
    gk: ServeProcess
    tokens: Tokens

    def call(self, method: str, path: str, who: str, body: Any = None) -> dict[str, Any]:
        answer = httpx.request(
            method,
            f"{self.gk.url}/api/v1{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.tokens.by_name[who]}"},
            timeout=30,
        )
        assert answer.status_code in (200, 201), f"{method} {path}: {answer.text}"
        found: dict[str, Any] = answer.json()
        return found

    def submit(self, spec: dict[str, Any]) -> str:
        return str(self.call("POST", "/releases", "ci-bot", spec)["release_id"])

    def release(self, rid: str) -> dict[str, Any]:
        return self.call("GET", f"/releases/{rid}", "rita")

    def waits_at(self, rid: str, step: str) -> None:
        def waiting() -> bool:
            found = self.release(rid)
            assert not found["final"], f"{rid} ended: {found['phase']}: {found['reason']}"
            return any(
                s["name"] == step and s["status"] == "waiting-approval" for s in found["steps"]
            )

        wait_for(f"{rid} waiting at {step}", waiting, timeout=180)

    def approve(self, rid: str, step: str) -> None:
        self.call("POST", f"/releases/{rid}/steps/{step}/approve", "rita", {"comment": "fine"})

    def ended(self, rid: str) -> dict[str, Any]:
        found: dict[str, Any] = wait_for(
            f"{rid} ends", lambda: (r := self.release(rid))["final"] and r, timeout=180
        )
        return found


def instant(prometheus_url: str, expr: str, at: float | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"query": expr}
    if at is not None:
        params["time"] = at
    answer: dict[str, Any] = httpx.get(
        f"{prometheus_url}/api/v1/query", params=params, timeout=30
    ).json()
    return answer


def values(answer: dict[str, Any]) -> list[float]:
    data = answer["data"]
    if data["resultType"] == "scalar":
        return [float(data["result"][1])]
    return [float(sample["value"][1]) for sample in data["result"]]


def sees(prometheus_url: str, expr: str, value: float) -> None:
    """Wait until Prometheus has ``value`` for ``expr`` (one series)."""
    wait_for(
        f"Prometheus to see {expr} {value:g}",
        lambda: values(instant(prometheus_url, expr)) == [value],
        timeout=30,
    )


def grows(prometheus_url: str, expr: str) -> None:
    """Wait until Prometheus has ``expr`` (one series), then until it has a higher value."""
    first = wait_for(
        f"Prometheus to see {expr}", lambda: values(instant(prometheus_url, expr)), timeout=60
    )[0]
    wait_for(
        f"Prometheus to see {expr} above {first:g}",
        lambda: any(v > first for v in values(instant(prometheus_url, expr))),
        timeout=60,
    )


def last_scrape(prometheus_url: str) -> float:
    found = values(instant(prometheus_url, 'timestamp(up{job="gatekeeper"})'))
    return found[0] if found else 0.0


def scraped_after(prometheus_url: str, moment: float) -> None:
    """Wait until two scrapes of the service started after ``moment``."""
    wait_for(
        "two scrapes of the service",
        lambda: last_scrape(prometheus_url) > moment + 1.5 * SCRAPE_S,
        timeout=30,
    )


@dataclass
class Scenario:
    prometheus_url: str
    at: float
    """The moment every query is evaluated at: two scrapes after the last change."""
    exposition: str
    """The service's /metrics at that moment."""


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    base = tmp_path_factory.mktemp("dashboard")
    state_dir = base / "target"
    state_dir.mkdir()
    router_port = free_port()
    tokens = write_tokens(base / "tokens", {"ci-bot": "ci", "rita": "release-manager"})
    signing = base / "webhook-secret"
    signing.write_text(secrets.token_hex(16))

    def spec(version: str, over: str, *flags: str) -> dict[str, Any]:
        """A release of ``version`` over stable ``over``, approved before its promotion."""
        stable = {"version": over, "command": service_command(over, "--latency-ms", "5")}
        return release_spec(
            version,
            router_port,
            state_dir,
            *flags,
            stable=stable,
            strategy=BLUE_GREEN,
            gates=GATES,
            approvals=["promote"],
        )

    load = LoadGenerator(f"http://127.0.0.1:{router_port}/", rps=200, duration=900)
    load.start()
    try:
        # The service's way to Prometheus. Prometheus's config names the service's address,
        # the service's config this proxy's, so it listens first and forwards once
        # Prometheus runs (no release queries it before).
        with webhook_receiver() as receiver, TcpProxy(("127.0.0.1", 0)) as to_prometheus:
            hook = {"type": "webhook", "url": receiver.url, "secret": {"file": str(signing)}}
            config = write_config(
                base / "gk.yaml",
                f"sqlite:///{base / 'gk.db'}",
                tokens,
                prometheus={"url": f"http://127.0.0.1:{to_prometheus.port}"},
                notifications={"receivers": [hook]},
            )
            with running_serve(config, base / "serve.log", base / "home") as gk:
                address = gk.url.removeprefix("http://")
                with prometheus(
                    targets={"gatekeeper": address},
                    scrape_interval=f"{SCRAPE_S:g}s",
                    file_sd=state_dir / "file_sd.json",
                ) as prom:
                    listens = urlsplit(prom.url)
                    assert listens.hostname and listens.port, prom.url
                    to_prometheus.target = (listens.hostname, listens.port)
                    wait_for_target_up(prom, "gatekeeper")
                    api = Api(gk, tokens)
                    log = gk.log

                    good = api.submit(spec("v2", "v1"))
                    bad = api.submit(spec("v3", "v2", "--error-rate", "0.5"))
                    api.waits_at(good, "approve-promote")
                    api.approve(good, "approve-promote")
                    ended = api.ended(good)
                    assert ended["phase"] == "promoted", ended["reason"] + log.read_text()[-3000:]
                    ended = api.ended(bad)
                    assert ended["phase"] == "rolled_back", ended["reason"]
                    assert ended["reason"].startswith("abort: error ratio"), ended["reason"]

                    again = api.submit(spec("v4", "v2"))
                    api.waits_at(again, "approve-promote")
                    sees(prom.url, 'gatekeeper_releases_total{outcome="promoted"}', 1)
                    sees(prom.url, 'gatekeeper_approval_wait_seconds_count{outcome="approved"}', 1)
                    api.approve(again, "approve-promote")
                    assert api.ended(again)["phase"] == "promoted"

                    # Its approval waits 4m (hold_timeout 2h, compressed), room enough for
                    # the outage below and the queries on a loaded machine.
                    waiting = api.submit({**spec("v5", "v4"), "hold_timeout": "2h"})
                    api.waits_at(waiting, "approve-promote")
                    # Its gates keep judging while it waits: with Prometheus out of reach,
                    # each query fails after its retries and counts a provider error.
                    to_prometheus.down()
                    grows(prom.url, PROVIDER_ERRORS)
                    to_prometheus.up()
                    # A gate that could not measure has no value; once its queries answer
                    # again, it has.
                    wait_for(
                        "Prometheus to see the abort gate's value again",
                        lambda: values(instant(prom.url, 'gatekeeper_gate_value{gate="abort"}')),
                        timeout=60,
                    )

                    scraped_after(prom.url, time.time())
                    at = time.time()
                    assert not api.release(waiting)["final"], "v5 must still wait"
                    assert receiver.received > 0, "no notification reached the receiver"
                    yield Scenario(prom.url, at, gk.get("/metrics").text)
    finally:
        load.stop()
        target = LocalProcessTarget(APP, state_dir, router_port=router_port)
        target.shutdown()
        target.close()


# -- the panels ------------------------------------------------------------------------------


def _panel_params() -> list[Any]:
    params = []
    for where, expr in dashboard_queries():
        if not where.startswith("panel "):
            continue
        params.append(pytest.param(expr, id=where.removeprefix("panel ")))
    return params


@pytest.mark.parametrize("expr", _panel_params())
def test_every_panel_query_returns_data(scenario: Scenario, expr: str) -> None:
    for label, chosen in (("All", ALL), (f"app {APP}, environment {ENVIRONMENT}", CHOSEN)):
        sent = grafana(expr, chosen)
        answer = instant(scenario.prometheus_url, sent, scenario.at)
        shown = json.dumps(answer)[:3000]
        assert answer.get("status") == "success", f"{label}: {sent}\n-> {shown}"
        found = values(answer)
        assert found, f"{label}: no series: {sent}\n-> {shown}"
        assert any(math.isfinite(v) for v in found), f"{label}: no number: {sent}\n-> {shown}"


def test_every_variable_lists_the_values_of_the_scenario(scenario: Scenario) -> None:
    expected = {"app": {APP}, "environment": {ENVIRONMENT}, "gate": {"abort"}}
    seen: dict[str, list[str]] = {}
    for variable in DASHBOARD["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        # Grafana asks Prometheus's label values API for label_values(selector, label).
        parsed = _LABEL_VALUES.match(text)
        assert parsed is not None, f"{variable['name']}: not label_values(...): {text}"
        params: dict[str, Any] = {"start": scenario.at - 3600, "end": scenario.at}
        if parsed["match"]:
            params["match[]"] = grafana(parsed["match"], ALL)
        answer = httpx.get(
            f"{scenario.prometheus_url}/api/v1/label/{parsed['label']}/values",
            params=params,
            timeout=30,
        ).json()
        assert answer.get("status") == "success", f"{variable['name']}: {text} -> {answer}"
        seen[variable["name"]] = answer["data"]
    assert set(seen) == set(expected), seen
    for name, wanted in expected.items():
        assert wanted <= set(seen[name]), f"variable {name} lists {seen[name]}"


def test_every_metric_name_the_dashboard_and_the_alerts_read_is_one_the_service_exports(
    scenario: Scenario,
) -> None:
    exported = {
        family.name + suffix
        for family in text_string_to_metric_families(scenario.exposition)
        for suffix in SUFFIXES.get(family.type, ())
    }
    assert "gatekeeper_releases_total" in exported and "gatekeeper_leader" in exported
    for where, expr in dashboard_queries() + alert_expressions():
        unknown = metric_names(expr) - exported
        if where.startswith("alert "):
            unknown -= PROMETHEUS_SERIES
        assert not unknown, f"{where} reads {sorted(unknown)}, not on the service's /metrics"


def test_every_alert_expression_is_evaluated_by_prometheus(scenario: Scenario) -> None:
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    assert len(rules) == len(alert_expressions()) > 0
    for rule in rules:
        answer = instant(scenario.prometheus_url, rule["expr"], scenario.at)
        assert answer.get("status") == "success", f"{rule['alert']}: {rule['expr']}\n-> {answer}"
