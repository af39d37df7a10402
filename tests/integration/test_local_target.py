"""Integration tests for the local target: real router and demo-service processes on loopback."""

from __future__ import annotations

import gc
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Protocol

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gatekeeper.domain.errors import InvalidInput, StepFailed
from gatekeeper.targets.base import VersionRun
from gatekeeper.targets.local.clock import Clock
from gatekeeper.targets.local.loadgen import LoadGenerator
from gatekeeper.targets.local.processes import free_port, pid_alive
from gatekeeper.targets.local.target import LocalProcessTarget

pytestmark = pytest.mark.integration

APP = "shop"


def service(version: str, *flags: str) -> VersionRun:
    command = (
        "{python} -m gatekeeper.targets.local.demo_service --app {app} --version {version} "
        "--port {port} --latency-ms 1 --latency-jitter-ms 0 " + " ".join(flags)
    )
    return VersionRun(version=version, command=command)


class Pids:
    """Every pid a target says it started or adopted, to check that none is left behind."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        self.seen.update(int(p) for p in re.findall(r"pid (\d+)", line))


@pytest.fixture
def pids() -> Pids:
    return Pids()


class MakeTarget(Protocol):
    def __call__(
        self, *, start_timeout: float = ..., file_sd: Path | None = ..., clock: Clock | None = ...
    ) -> LocalProcessTarget: ...


@pytest.fixture
def make_target(tmp_path: Path, pids: Pids) -> Iterator[MakeTarget]:
    def make(
        *, start_timeout: float = 20.0, file_sd: Path | None = None, clock: Clock | None = None
    ) -> LocalProcessTarget:
        return LocalProcessTarget(
            APP,
            tmp_path / "target",
            log=pids,
            start_timeout=start_timeout,
            file_sd=file_sd,
            clock=clock,
        )

    yield make
    LocalProcessTarget(APP, tmp_path / "target", log=pids).shutdown()
    left = [pid for pid in sorted(pids.seen) if pid_alive(pid)]
    assert left == [], f"processes left behind: {left}"


def get(url: str, path: str = "/") -> tuple[int, dict[str, str], bytes]:
    m = re.match(r"http://([^:/]+):(\d+)", url)
    assert m
    conn = http.client.HTTPConnection(m.group(1), int(m.group(2)), timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def route(url: str, n: int) -> Counter[str]:
    """Send ``n`` requests one after another; count backends and versions."""
    seen: Counter[str] = Counter()
    for _ in range(n):
        status, headers, _ = get(url)
        assert status == 200
        seen[headers["x-gatekeeper-backend"]] += 1
        seen[headers["x-version"]] += 1
    return seen


def started(target: LocalProcessTarget) -> LocalProcessTarget:
    target.ensure_stable(service("v1"))
    target.deploy_candidate(service("v2"), 100)
    return target


def details(target: LocalProcessTarget) -> dict[str, str]:
    return target.state().details


def test_routes_by_weight_and_changes_at_run_time(make_target: MakeTarget) -> None:
    target = started(make_target())
    url = target.traffic_url()
    assert target.state().candidate_weight == 0
    assert route(url, 20)["stable"] == 20

    target.set_weight(25)
    seen = route(url, 200)
    assert seen["candidate"] == 50 and seen["stable"] == 150  # exact, not only about 25%
    assert seen["v2"] == 50 and seen["v1"] == 150

    target.set_weight(50)
    seen = route(url, 100)
    assert seen["candidate"] == 50
    assert target.state().candidate_weight == 50

    # Setting the weight it has already does not touch the router (no PUT, no save).
    router_file = target.state_dir / "router.json"
    before = router_file.stat().st_ino
    target.set_weight(50)
    assert router_file.stat().st_ino == before


def test_metrics_endpoints_and_preview(make_target: MakeTarget, tmp_path: Path) -> None:
    sd = tmp_path / "file_sd.json"
    target = started(make_target(file_sd=sd))
    d = details(target)
    assert target.metrics_endpoints() == [d["stable_address"], d["candidate_address"]]
    assert json.loads(sd.read_text()) == [
        {"targets": [d["stable_address"], d["candidate_address"]], "labels": {}}
    ]
    status, headers, body = get(target.preview_url())
    assert status == 200 and headers["x-version"] == "v2" and b"shop v2" in body
    state = target.state()
    assert (state.stable_version, state.candidate_version) == ("v1", "v2")
    assert state.candidate_ready and state.candidate_scale_percent == 100


def test_new_instance_adopts_after_a_controller_crash(make_target: MakeTarget) -> None:
    target = started(make_target())
    target.set_weight(25)
    before = details(target)
    url = target.traffic_url()
    del target  # the controller dies: no close(), no shutdown()
    gc.collect()

    adopted = make_target()
    after = details(adopted)
    assert adopted.state().candidate_weight == 25
    for key in ("router_pid", "stable_pid", "candidate_pid"):
        assert after[key] == before[key]
    assert adopted.adopted == {
        "router": int(before["router_pid"]),
        "stable": int(before["stable_pid"]),
        "candidate": int(before["candidate_pid"]),
    }
    assert adopted.traffic_url() == url
    assert route(url, 100)["candidate"] == 25

    # A resumed release repeats its steps; nothing is started again, traffic does not move.
    adopted.ensure_stable(service("v1"))
    adopted.deploy_candidate(service("v2"), 100)
    adopted.set_weight(25)
    assert {k: details(adopted)[k] for k in before if k.endswith("_pid")} == {
        k: v for k, v in before.items() if k.endswith("_pid")
    }
    assert adopted.state().candidate_weight == 25


CONTROLLER = """
import os, sys
from pathlib import Path
from gatekeeper.targets.base import VersionRun
from gatekeeper.targets.local.target import LocalProcessTarget

cmd = ("{python} -m gatekeeper.targets.local.demo_service --app {app} --version {version} "
       "--port {port} --latency-ms 1 --latency-jitter-ms 0")
t = LocalProcessTarget("shop", Path(sys.argv[1]))
t.ensure_stable(VersionRun("v1", command=cmd))
t.deploy_candidate(VersionRun("v2", command=cmd), 100)
t.set_weight(25)
print(t.traffic_url(), flush=True)
os.kill(os.getpid(), 9)  # the controller process dies without cleaning up
"""


def test_adopts_what_a_killed_controller_process_left_running(
    make_target: MakeTarget, tmp_path: Path, pids: Pids
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CONTROLLER, str(tmp_path / "target")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    url = done.stdout.strip()
    recorded = json.loads((tmp_path / "target" / "target.json").read_text())
    pids.seen.update(
        [recorded["router"]["pid"], recorded["stable"]["pid"], recorded["candidate"]["pid"]]
    )

    adopted = make_target()
    assert adopted.adopted == {
        "router": recorded["router"]["pid"],
        "stable": recorded["stable"]["pid"],
        "candidate": recorded["candidate"]["pid"],
    }
    assert adopted.state().candidate_weight == 25
    assert adopted.traffic_url() == url
    assert route(url, 100)["candidate"] == 25
    adopted.rollback()  # stops a process this controller did not start
    assert not pid_alive(recorded["candidate"]["pid"])
    assert route(url, 10)["v1"] == 10


def test_rollback_sends_everything_to_stable_and_stops_the_candidate(
    make_target: MakeTarget,
) -> None:
    target = started(make_target())
    target.set_weight(25)
    candidate_pid = int(details(target)["candidate_pid"])

    target.rollback()
    assert not pid_alive(candidate_pid)
    state = target.state()
    assert state.candidate_version is None and state.candidate_weight == 0
    assert state.stable_version == "v1" and state.stable_scale_percent == 100
    seen = route(target.traffic_url(), 50)
    assert seen["stable"] == 50 and seen["v1"] == 50
    target.rollback()  # again: nothing to do, no error
    with pytest.raises(StepFailed, match="no candidate"):
        target.preview_url()


def test_promote_stops_the_old_stable_after_the_delay(make_target: MakeTarget) -> None:
    target = started(make_target())
    target.set_weight(50)
    old_pid = int(details(target)["stable_pid"])
    new_pid = int(details(target)["candidate_pid"])

    t0 = time.monotonic()
    target.promote(1.0)
    seen = route(target.traffic_url(), 20)
    assert seen["stable"] == 20 and seen["v2"] == 20
    state = target.state()
    assert (state.stable_version, state.candidate_version, state.candidate_weight) == (
        "v2",
        None,
        0,
    )
    assert int(state.details["stable_pid"]) == new_pid
    assert pid_alive(old_pid)  # still up during the delay

    while pid_alive(old_pid) and time.monotonic() - t0 < 5:
        time.sleep(0.05)
    stopped_after = time.monotonic() - t0
    assert not pid_alive(old_pid)
    assert 0.9 <= stopped_after < 3.0
    target.promote(1.0)  # again: nothing to promote, no error
    target.ensure_stable(service("v1"))  # a resumed release: v2 stays stable
    assert target.state().stable_version == "v2"


class FakeClock:
    """Wall-clock time that moves only when told to."""

    def __init__(self, now: datetime) -> None:
        self.t = now

    def now(self) -> datetime:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


def test_the_delay_before_an_old_stable_stops_is_judged_by_the_injected_clock(
    make_target: MakeTarget,
) -> None:
    t0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    clock = FakeClock(t0)
    target = started(make_target(clock=clock))
    path = target.state_dir / "target.json"
    assert json.loads(path.read_text())["stable"]["started_at"] == t0.timestamp()
    old_pid = int(details(target)["stable_pid"])

    target.promote(1800)  # half an hour by the clock, none of it waited for
    assert json.loads(path.read_text())["retiring"][0]["not_before"] == t0.timestamp() + 1800
    clock.sleep(1799)
    target.promote(1800)  # a resumed step looks again: not due yet
    assert pid_alive(old_pid)
    clock.sleep(1)
    target.promote(1800)  # due, and the router sends it nothing
    assert not pid_alive(old_pid)
    assert json.loads(path.read_text())["retiring"] == []
    target.close()


def test_a_pending_stop_is_finished_by_the_next_instance(make_target: MakeTarget) -> None:
    target = started(make_target())
    old_pid = int(details(target)["stable_pid"])
    target.promote(0.5)
    target.close()  # the controller goes away before the delay has passed
    time.sleep(0.8)
    assert pid_alive(old_pid)
    make_target()  # the next one adopts and finishes the stop
    assert not pid_alive(old_pid)


def test_dead_candidate_gives_502_and_is_restarted(make_target: MakeTarget) -> None:
    target = started(make_target())
    target.set_weight(100)
    pid = int(details(target)["candidate_pid"])
    os.killpg(pid, signal.SIGKILL)
    while pid_alive(pid):
        time.sleep(0.01)

    t0 = time.monotonic()
    status, headers, _ = get(target.traffic_url())
    assert status == 502 and headers["x-gatekeeper-backend"] == "candidate"
    assert time.monotonic() - t0 < 2.0
    assert not target.state().candidate_ready
    with pytest.raises(StepFailed, match="not answering"):
        target.set_weight(50)

    target.deploy_candidate(service("v2"), 100)  # the same step again restarts it
    assert int(details(target)["candidate_pid"]) != pid
    assert target.state().candidate_weight == 100
    assert route(target.traffic_url(), 10)["v2"] == 10


def test_a_version_that_does_not_start_names_itself_its_command_and_log(
    make_target: MakeTarget,
) -> None:
    target = make_target(start_timeout=5.0)
    target.ensure_stable(service("v1"))
    broken = VersionRun(
        "v9",
        command="{python} -c 'import sys; print(\"boom on\", sys.argv[1]); sys.exit(3)' {port}",
    )
    with pytest.raises(StepFailed) as e:
        target.deploy_candidate(broken, 100)
    text = str(e.value)
    assert "candidate v9" in text and "exited with code 3" in text
    assert "boom on" in text and "sys.exit(3)" in text
    assert target.state().candidate_version is None
    with pytest.raises(InvalidInput, match="must take"):
        target.deploy_candidate(VersionRun("v9", command="svc --port 80"), 100)
    with pytest.raises(InvalidInput, match="from a command"):
        target.deploy_candidate(VersionRun("v9"), 100)


def test_router_admin_api_validates_changes(make_target: MakeTarget) -> None:
    target = started(make_target())
    admin = json.loads((target.state_dir / "router.json").read_text())["admin_port"]
    conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
    try:
        for body, code in (
            ({"weight": 101}, 400),
            ({"candidate": None, "weight": 10}, 400),
            ({"stable": "192.0.2.1:80"}, 400),
            ({"weight": 30}, 200),
        ):
            conn.request("PUT", "/weights", body=json.dumps(body))
            resp = conn.getresponse()
            payload = json.loads(resp.read())
            assert resp.status == code, payload
        conn.request("GET", "/weights")
        routing = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    d = details(target)
    assert routing == {
        "stable": d["stable_address"],
        "candidate": d["candidate_address"],
        "weight": 30,
    }
    assert target.state().candidate_weight == 30


def test_demo_service_errors_and_metrics(tmp_path: Path) -> None:
    port = free_port()
    cmd = [
        sys.executable, "-m", "gatekeeper.targets.local.demo_service", "--app", APP,
        "--version", "v3", "--port", str(port), "--error-rate", "0.5", "--latency-ms", "0",
        "--latency-jitter-ms", "0", "--seed", "11",
    ]  # fmt: skip
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    if get(url, "/healthz")[0] == 200:
                        break
                except OSError:
                    time.sleep(0.05)
            # Before any request both code series exist at 0.
            assert counts(url) == {"200": 0.0, "500": 0.0}
            codes = Counter(get(url)[0] for _ in range(400))
            assert set(codes) == {200, 500}
            assert 0.4 <= codes[500] / 400 <= 0.6
            assert counts(url) == {"200": float(codes[200]), "500": float(codes[500])}
            assert get(url, "/healthz")[0] == 200
            assert durations(url) == 400
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=5) == 0  # a clean exit on SIGTERM


def counts(url: str) -> dict[str, float]:
    text = get(url, "/metrics")[2].decode()
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name == "http_requests":
            for s in family.samples:
                if s.name == "http_requests_total":
                    assert s.labels["app"] == APP and s.labels["version"] == "v3"
                    out[s.labels["code"]] = s.value
    return out


def durations(url: str) -> float:
    text = get(url, "/metrics")[2].decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "http_request_duration_seconds_bucket" and s.labels["le"] == "0.5":
                return s.value
    raise AssertionError("no 0.5 bucket")


def test_router_carries_a_few_hundred_requests_a_second(make_target: MakeTarget) -> None:
    target = started(make_target())
    target.set_weight(10)
    gen = LoadGenerator(target.traffic_url(), rps=300, duration=2.0).start()
    t0 = time.monotonic()
    stats = gen.wait()
    assert time.monotonic() - t0 < 5.0  # it stopped by itself
    assert not gen.running
    assert stats.failures == {}
    assert stats.by_status.get(200, 0) >= 0.9 * 600
    assert 0.08 <= stats.by_backend["candidate"] / stats.answered <= 0.12
    assert stats.by_version["v2"] == stats.by_backend["candidate"]


def test_a_dead_router_restarts_on_its_port_with_its_routing(make_target: MakeTarget) -> None:
    target = started(make_target())
    target.set_weight(25)
    url = target.traffic_url()
    router_pid = int(details(target)["router_pid"])
    os.killpg(router_pid, signal.SIGKILL)
    while pid_alive(router_pid):
        time.sleep(0.01)
    state = target.state()
    assert state.details["router"] == "down" and state.candidate_weight == 25

    target.ensure_stable(service("v1"))  # the next step brings the router back
    assert int(details(target)["router_pid"]) != router_pid
    assert target.traffic_url() == url
    assert target.state().candidate_weight == 25
    assert route(url, 100)["candidate"] == 25


class Echo(BaseHTTPRequestHandler):
    """Answers with what it received: method, path, headers and body, as JSON."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _echo(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        out = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode(),
            }
        ).encode()
        self.send_response(201)
        self.send_header("Content-Length", str(len(out)))
        self.send_header("X-Echo", "yes")
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = _echo


def test_router_forwards_method_path_headers_and_body(tmp_path: Path) -> None:
    echo = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    echo.daemon_threads = True
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    state_file = tmp_path / "router.json"
    cmd = [
        sys.executable, "-m", "gatekeeper.targets.local.router", "--port", "0",
        "--admin-port", "0", "--state-file", str(state_file),
    ]  # fmt: skip
    with subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT) as proc:
        try:
            deadline = time.monotonic() + 10
            while not state_file.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            info = json.loads(state_file.read_text())
            admin = http.client.HTTPConnection("127.0.0.1", info["admin_port"], timeout=5)
            stable = f"127.0.0.1:{echo.server_address[1]}"
            admin.request("PUT", "/weights", body=json.dumps({"stable": stable, "weight": 0}))
            assert admin.getresponse().status == 200
            admin.close()

            conn = http.client.HTTPConnection("127.0.0.1", info["port"], timeout=5)
            conn.request("POST", "/orders/7?x=1&y=2", body=b'{"qty": 3}', headers={"X-Trace": "t1"})
            resp = conn.getresponse()
            got = json.loads(resp.read())
            assert resp.status == 201
            assert resp.getheader("X-Echo") == "yes"
            assert resp.getheader("X-Gatekeeper-Backend") == "stable"
            assert got["method"] == "POST" and got["path"] == "/orders/7?x=1&y=2"
            assert got["headers"]["x-trace"] == "t1" and got["body"] == '{"qty": 3}'
            assert got["headers"]["x-forwarded-for"] == "127.0.0.1"

            # A chunked body arrives whole, with its length.
            conn.request("PUT", "/c", body=iter([b"ab", b"cd"]), encode_chunked=True)
            got = json.loads(conn.getresponse().read())
            assert got["body"] == "abcd" and got["headers"]["content-length"] == "4"
            conn.close()
            assert json.loads(state_file.read_text())["routing"]["stable"] == stable
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=5) == 0
            echo.shutdown()
            echo.server_close()


def test_a_router_started_but_not_recorded_is_adopted(make_target: MakeTarget) -> None:
    target = started(make_target())
    router_pid = int(details(target)["router_pid"])
    url = target.traffic_url()
    del target
    # As if the controller died after starting the router and before recording it.
    path = next(iter(make_target().state_dir.glob("target.json")))
    data = json.loads(path.read_text())
    data["router"] = None
    path.write_text(json.dumps(data))

    adopted = make_target()
    assert adopted.traffic_url() == url
    assert int(details(adopted)["router_pid"]) == router_pid
    assert adopted.adopted["router"] == router_pid


def test_a_promotion_cut_short_by_a_crash_is_finished_on_resume(make_target: MakeTarget) -> None:
    target = started(make_target())
    target.set_weight(25)
    url = target.traffic_url()
    path = target.state_dir / "target.json"
    del target
    # As if the controller died after recording the promotion, before telling the router.
    data = json.loads(path.read_text())
    old = data["stable"]
    data["stable"], data["candidate"] = data["candidate"], None
    data["retiring"] = [
        {"version": "v1", "pid": old["pid"], "port": old["port"], "not_before": time.time() + 0.3}
    ]
    data["replaced"] = ["v1"]
    path.write_text(json.dumps(data))
    assert route(url, 100)["v1"] == 75  # the router still splits

    resumed = make_target()
    time.sleep(0.5)
    assert pid_alive(old["pid"])  # due, but it still takes traffic: not stopped yet
    resumed.ensure_stable(service("v1"))  # what a resumed release does first
    resumed.promote(0.3)  # then the promote step again
    assert route(url, 20)["v2"] == 20
    deadline = time.monotonic() + 5
    while pid_alive(old["pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(old["pid"])
    state = resumed.state()
    assert (state.stable_version, state.candidate_version, state.candidate_weight) == (
        "v2",
        None,
        0,
    )
