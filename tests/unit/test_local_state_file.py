"""The local target's state file: files written before the pydantic models load unchanged,
and anything else is refused with the field named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gatekeeper.domain.errors import InvalidInput
from gatekeeper.targets.local.state import (
    LocalState,
    ProcessRecord,
    Retiring,
    RouterRecord,
    load_state,
    save_state,
)

# Written by save_state of the hand-written (dataclass, to_json) state file, before the
# split of target.py (commit 15ec1b4): the byte-exact content of target.json.
WRITTEN_BEFORE_FULL = """\
{
  "app": "shop",
  "candidate": {
    "argv": [
      "svc",
      "--port",
      "40300"
    ],
    "command": "svc --port {port}",
    "log": "logs/v3.log",
    "pid": 4260,
    "port": 40300,
    "started": null,
    "started_at": 1754300100.5,
    "version": "v3"
  },
  "candidate_scale": 50,
  "format": 1,
  "replaced": [
    "v0",
    "v1"
  ],
  "retiring": [
    {
      "not_before": 1754300300.0,
      "pid": 4200,
      "port": 40100,
      "started": "98700",
      "version": "v1"
    },
    {
      "not_before": 0.0,
      "pid": 4255,
      "port": 40250,
      "started": null,
      "version": "v3"
    }
  ],
  "router": {
    "admin_port": 40123,
    "pid": 4242,
    "port": 18080,
    "started": "98765"
  },
  "stable": {
    "argv": [
      "/usr/bin/python3",
      "-m",
      "gatekeeper.targets.local.demo_service",
      "--app",
      "shop",
      "--version",
      "v2",
      "--port",
      "40200"
    ],
    "command": "{python} -m gatekeeper.targets.local.demo_service --app {app} --version {version} --port {port}",
    "log": "logs/v2.log",
    "pid": 4250,
    "port": 40200,
    "started": "98790",
    "started_at": 1754300000.25,
    "version": "v2"
  },
  "stable_scale": 100,
  "weight": 25
}
"""  # noqa: E501

WRITTEN_BEFORE_EMPTY = """\
{
  "app": "shop",
  "candidate": null,
  "candidate_scale": 0,
  "format": 1,
  "replaced": [],
  "retiring": [],
  "router": null,
  "stable": null,
  "stable_scale": 0,
  "weight": 0
}
"""

EXPECTED_FULL = LocalState(
    app="shop",
    router=RouterRecord(pid=4242, port=18080, admin_port=40123, started="98765"),
    stable=ProcessRecord(
        version="v2",
        pid=4250,
        port=40200,
        command="{python} -m gatekeeper.targets.local.demo_service --app {app} "
        "--version {version} --port {port}",
        argv=[
            "/usr/bin/python3",
            "-m",
            "gatekeeper.targets.local.demo_service",
            "--app",
            "shop",
            "--version",
            "v2",
            "--port",
            "40200",
        ],
        log="logs/v2.log",
        started="98790",
        started_at=1754300000.25,
    ),
    candidate=ProcessRecord(
        version="v3",
        pid=4260,
        port=40300,
        command="svc --port {port}",
        argv=["svc", "--port", "40300"],
        log="logs/v3.log",
        started_at=1754300100.5,
    ),
    weight=25,
    stable_scale=100,
    candidate_scale=50,
    retiring=[
        Retiring(version="v1", pid=4200, port=40100, not_before=1754300300.0, started="98700"),
        Retiring(version="v3", pid=4255, port=40250, not_before=0.0),
    ],
    replaced=["v0", "v1"],
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [(WRITTEN_BEFORE_FULL, EXPECTED_FULL), (WRITTEN_BEFORE_EMPTY, LocalState(app="shop"))],
    ids=["full", "empty"],
)
def test_a_state_file_written_before_the_models_loads_and_is_written_back_the_same(
    tmp_path: Path, text: str, expected: LocalState
) -> None:
    path = tmp_path / "target.json"
    path.write_text(text)
    loaded = load_state(path)
    assert loaded == expected
    assert loaded is not None
    save_state(path, loaded)
    assert path.read_text() == text  # older code reads what this code writes


def test_a_retiring_entry_without_its_start_time_loads(tmp_path: Path) -> None:
    # How a hand-edited or crash-recovery file lists a version to stop.
    path = tmp_path / "target.json"
    data = json.loads(WRITTEN_BEFORE_EMPTY)
    data["retiring"] = [{"version": "v1", "pid": 77, "port": 9001, "not_before": 1754300000}]
    path.write_text(json.dumps(data))
    state = load_state(path)
    assert state is not None
    assert state.retiring == [Retiring(version="v1", pid=77, port=9001, not_before=1754300000.0)]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"extra": 1}, "extra"),
        ({"router": {"pid": 1, "port": 2, "admin_port": 3, "host": "x"}}, "router.host"),
        ({"weight": 101}, "weight"),
        ({"stable_scale": -1}, "stable_scale"),
        ({"router": {"pid": 0, "port": 2, "admin_port": 3}}, "router.pid"),
        ({"router": {"pid": 1, "port": 70000, "admin_port": 3}}, "router.port"),
        ({"retiring": [{"version": "v1", "pid": 5, "port": 6}]}, "retiring.0.not_before"),
        ({"replaced": "v1"}, "replaced"),
        ({"format": 2}, "format"),
    ],
)
def test_a_bad_state_file_is_refused_naming_the_field(
    tmp_path: Path, change: dict[str, object], field: str
) -> None:
    path = tmp_path / "target.json"
    path.write_text(json.dumps({**json.loads(WRITTEN_BEFORE_EMPTY), **change}))
    with pytest.raises(InvalidInput, match=rf"target\.json is not valid \(.*\b{field}:"):
        load_state(path)


def test_a_state_file_without_its_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "target.json"
    data = json.loads(WRITTEN_BEFORE_EMPTY)
    del data["format"]
    path.write_text(json.dumps(data))
    with pytest.raises(InvalidInput, match="no format field"):
        load_state(path)


def test_a_state_built_in_code_takes_the_current_format(tmp_path: Path) -> None:
    path = tmp_path / "target.json"
    save_state(path, LocalState(app="shop"))
    assert json.loads(path.read_text())["format"] == 1


def test_records_are_frozen() -> None:
    rec = RouterRecord(pid=1, port=2, admin_port=3)
    with pytest.raises(ValueError):
        rec.pid = 4
