"""Unit tests for the local target: round robin, routing checks, state file, command templates."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from gatekeeper.domain.errors import InvalidInput
from gatekeeper.targets.local.commands import fill_command
from gatekeeper.targets.local.demo_service import Behaviour
from gatekeeper.targets.local.file_sd import file_sd_groups, write_file_sd
from gatekeeper.targets.local.loadgen import LoadGenerator, LoadStats
from gatekeeper.targets.local.processes import pid_alive
from gatekeeper.targets.local.router import (
    CANDIDATE,
    STABLE,
    Balancer,
    Routing,
    RoutingError,
    SmoothWeightedRoundRobin,
)
from gatekeeper.targets.local.state import (
    LocalState,
    ProcessRecord,
    Retiring,
    RouterRecord,
    load_state,
    save_state,
)


def picks(weight: int, n: int = 100) -> list[str | None]:
    wrr = SmoothWeightedRoundRobin([(STABLE, 100 - weight), (CANDIDATE, weight)])
    return [wrr.pick() for _ in range(n)]


# -- smooth weighted round robin --------------------------------------------------------------


def test_five_percent_is_exactly_five_of_one_hundred() -> None:
    got = picks(5)
    assert got.count(CANDIDATE) == 5
    assert got.count(STABLE) == 95


def test_five_percent_is_spread_not_bunched() -> None:
    got = picks(5)
    at = [i for i, name in enumerate(got) if name == CANDIDATE]
    gaps = [b - a for a, b in zip(at, at[1:], strict=False)]
    assert gaps == [20, 20, 20, 20]


def test_weight_zero_sends_everything_to_stable() -> None:
    assert set(picks(0, 250)) == {STABLE}


def test_weight_one_hundred_sends_everything_to_the_candidate() -> None:
    assert set(picks(100, 250)) == {CANDIDATE}


@pytest.mark.parametrize("weight", range(0, 101))
def test_every_weight_is_exact_over_one_hundred_requests(weight: int) -> None:
    assert picks(weight).count(CANDIDATE) == weight


def test_shares_are_exact_in_every_window_of_one_hundred() -> None:
    got = picks(25, 400)
    for start in range(0, 400, 100):
        assert got[start : start + 100].count(CANDIDATE) == 25


def test_nothing_to_pick_from_gives_none() -> None:
    assert SmoothWeightedRoundRobin([]).pick() is None
    assert SmoothWeightedRoundRobin([(STABLE, 0)]).pick() is None


def test_negative_weights_are_refused() -> None:
    with pytest.raises(ValueError):
        SmoothWeightedRoundRobin([(STABLE, -1)])


def test_balancer_change_takes_effect_at_once_and_exactly() -> None:
    b = Balancer(Routing(stable="127.0.0.1:1001", candidate="127.0.0.1:1002", weight=10))
    first = [b.pick() for _ in range(100)]
    assert sum(1 for p in first if p and p[0] == CANDIDATE) == 10
    b.replace({"weight": 40})
    second = [b.pick() for _ in range(100)]
    assert sum(1 for p in second if p and p[0] == CANDIDATE) == 40
    assert ("candidate", "127.0.0.1:1002") in second
    assert b.counts[CANDIDATE] == 50


def test_balancer_without_stable_answers_nothing() -> None:
    b = Balancer(Routing())
    assert b.pick() is None
    assert b.counts["unrouted"] == 1


# -- routing changes --------------------------------------------------------------------------


def test_routing_change_keeps_left_out_keys() -> None:
    r = Routing(stable="127.0.0.1:1", candidate="127.0.0.1:2", weight=5)
    assert r.merged({"weight": 50}) == Routing("127.0.0.1:1", "127.0.0.1:2", 50)
    assert r.merged({"candidate": None, "weight": 0}) == Routing("127.0.0.1:1", None, 0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"weight": 101}, "0 to 100"),
        ({"weight": -1}, "0 to 100"),
        ({"weight": True}, "0 to 100"),
        ({"weight": "5"}, "0 to 100"),
        ({"candidate": None, "weight": 5}, "needs a candidate"),
        ({"stable": "10.0.0.1:80"}, "loopback"),
        ({"stable": "example.com:80"}, "loopback"),
        ({"stable": "127.0.0.1"}, "host:port"),
        ({"stable": "127.0.0.1:0"}, "host:port"),
        ({"stable": 5}, "host:port"),
        ({"weights": 5}, "unknown fields"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_routing_changes_are_refused_by_name(change: object, message: str) -> None:
    r = Routing(stable="127.0.0.1:1", candidate="127.0.0.1:2", weight=5)
    with pytest.raises(RoutingError, match=message):
        r.merged(change)


def test_loopback_names_are_accepted() -> None:
    r = Routing().merged({"stable": "localhost:80", "candidate": "[::1]:81", "weight": 1})
    assert r.candidate == "[::1]:81"


# -- the state file ---------------------------------------------------------------------------


def full_state() -> LocalState:
    return LocalState(
        app="shop",
        router=RouterRecord(pid=101, port=8080, admin_port=8081, started="123"),
        stable=ProcessRecord(
            version="v1",
            pid=102,
            port=9001,
            command="svc --port {port}",
            argv=["svc", "--port", "9001"],
            log="logs/v1.log",
            started="124",
            started_at=1700000000.5,
        ),
        candidate=ProcessRecord(
            version="v2",
            pid=103,
            port=9002,
            command="svc --port {port} --version {version}",
            argv=["svc", "--port", "9002", "--version", "v2"],
            log="logs/v2.log",
        ),
        weight=25,
        stable_scale=100,
        candidate_scale=50,
        retiring=[Retiring(version="v0", pid=99, port=9000, not_before=1700000100.0)],
        replaced=["v0"],
    )


def test_state_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "target.json"
    state = full_state()
    save_state(path, state)
    assert load_state(path) == state
    assert json.loads(path.read_text())["format"] == 1


def test_empty_state_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "target.json"
    save_state(path, LocalState(app="shop"))
    assert load_state(path) == LocalState(app="shop")


def test_state_file_is_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "target.json"
    save_state(path, LocalState(app="shop"))
    before = path.stat().st_ino
    save_state(path, full_state())
    assert path.stat().st_ino != before  # a new file renamed over the old one
    assert [p.name for p in tmp_path.iterdir()] == ["target.json"]  # no temporary left


def test_missing_state_file_is_none(tmp_path: Path) -> None:
    assert load_state(tmp_path / "nothing.json") is None


@pytest.mark.parametrize("text", ["{", "[]", '{"format": 1}', '{"format": 9, "app": "x"}'])
def test_broken_state_file_is_refused_with_its_path(tmp_path: Path, text: str) -> None:
    path = tmp_path / "target.json"
    path.write_text(text)
    with pytest.raises(InvalidInput, match="target.json"):
        load_state(path)


# -- command templates ------------------------------------------------------------------------


def test_template_is_filled() -> None:
    argv = fill_command(
        "{python} -m svc --app {app} --version {version} --port {port} --bind 127.0.0.1:{port}",
        port=8123,
        app="shop",
        version="v2",
        python="/opt/py",
    )
    assert argv == [
        "/opt/py", "-m", "svc", "--app", "shop", "--version", "v2",
        "--port", "8123", "--bind", "127.0.0.1:8123",
    ]  # fmt: skip


def test_python_defaults_to_this_interpreter() -> None:
    assert fill_command("{python} x {port}", port=1, app="a", version="v")[0] == sys.executable


def test_template_is_split_without_a_shell() -> None:
    argv = fill_command(
        "svc --port {port} --motd 'hello world' ; rm -rf x $(boom)", port=1, app="a", version="v"
    )
    assert argv == ["svc", "--port", "1", "--motd", "hello world", ";", "rm", "-rf", "x", "$(boom)"]


def test_filled_values_are_not_split_again() -> None:
    argv = fill_command("svc --name={app}-{version} {port}", port=7, app="a", version="1.0+b")
    assert argv == ["svc", "--name=a-1.0+b", "7"]


def test_template_without_port_is_refused() -> None:
    with pytest.raises(InvalidInput, match=r"must take \{port\}"):
        fill_command("svc --app {app}", port=1, app="a", version="v")


def test_unknown_placeholder_is_refused() -> None:
    with pytest.raises(InvalidInput, match=r"unknown placeholder \{host\}"):
        fill_command("svc --port {port} --host {host}", port=1, app="a", version="v")


def test_json_braces_are_not_placeholders() -> None:
    argv = fill_command("""svc {port} '{"a": 1}'""", port=1, app="a", version="v")
    assert argv == ["svc", "1", '{"a": 1}']


def test_unbalanced_quotes_are_refused() -> None:
    with pytest.raises(InvalidInput, match="cannot be split"):
        fill_command("svc --port {port} 'oops", port=1, app="a", version="v")


# -- file_sd ----------------------------------------------------------------------------------


def test_file_sd_document(tmp_path: Path) -> None:
    path = tmp_path / "sd" / "file_sd.json"
    write_file_sd(path, ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9001"], {"release": "r1"})
    assert json.loads(path.read_text()) == [
        {"targets": ["127.0.0.1:9001", "127.0.0.1:9002"], "labels": {"release": "r1"}}
    ]
    write_file_sd(path, [], {"release": "r1"})
    assert json.loads(path.read_text()) == []


@pytest.mark.parametrize("endpoint", ["127.0.0.1", "http://127.0.0.1:80", "127.0.0.1:99999", ""])
def test_file_sd_refuses_bad_endpoints(endpoint: str) -> None:
    with pytest.raises(InvalidInput, match="host:port"):
        file_sd_groups([endpoint])


@pytest.mark.parametrize("label", ["1x", "__meta", "a-b"])
def test_file_sd_refuses_bad_label_names(label: str) -> None:
    with pytest.raises(InvalidInput, match="label"):
        file_sd_groups(["127.0.0.1:80"], {label: "x"})


# -- small pieces -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["http://example.com/", "http://10.1.2.3:80/", "http://0.0.0.0:80/", "https://127.0.0.1/"],
)
def test_loadgen_refuses_anything_but_loopback_http(url: str) -> None:
    with pytest.raises(InvalidInput, match="load generator url"):
        LoadGenerator(url, rps=10)


@pytest.mark.parametrize(
    ("rps", "duration"), [(0, 1), (-1, 1), (10, 0), (10, float("inf")), (10, float("nan"))]
)
def test_loadgen_is_always_bounded(rps: float, duration: float) -> None:
    with pytest.raises(InvalidInput):
        LoadGenerator("http://127.0.0.1:9/", rps=rps, duration=duration)


def test_loadgen_accepts_loopback_names() -> None:
    for url in ("http://127.0.0.1:9/", "http://localhost:9/x?y=1", "http://[::1]:9/"):
        LoadGenerator(url, rps=10, duration=1)


def test_load_stats_shares() -> None:
    stats = LoadStats(sent=4, by_status={200: 3, 500: 1})
    assert stats.answered == 4
    assert stats.share(500) == 0.25
    assert LoadStats(sent=0).share(500) == 0.0


@pytest.mark.parametrize(
    "kwargs", [{"error_rate": 1.5}, {"slow_share": -0.1}, {"latency_ms": -1}, {"slow_ms": -5}]
)
def test_demo_behaviour_is_checked(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Behaviour(**kwargs)


def test_pid_alive() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(2**22 + 12345)  # above the default pid_max
