"""The local target's import paths: the package's lazy exports and the names target.py held
before it was split."""

from __future__ import annotations

import importlib

import pytest

import gatekeeper.targets.local as local
from gatekeeper.targets.local import commands, processes, state, target


def test_the_package_exports_the_target_and_fill_command_lazily() -> None:
    assert local.LocalProcessTarget is target.LocalProcessTarget
    assert local.fill_command is commands.fill_command
    with pytest.raises(AttributeError, match="no_such_name"):
        local.no_such_name  # noqa: B018


@pytest.mark.parametrize(
    ("name", "home"),
    [
        ("LocalState", state),
        ("ProcessRecord", state),
        ("Retiring", state),
        ("RouterRecord", state),
        ("load_state", state),
        ("save_state", state),
        ("fill_command", commands),
        ("free_port", processes),
        ("pid_alive", processes),
        ("stop_process", processes),
        ("stop_processes", processes),
    ],
)
def test_names_target_py_held_before_the_split_still_import_from_it(
    name: str, home: object
) -> None:
    module = importlib.import_module("gatekeeper.targets.local.target")
    assert name in module.__all__
    assert getattr(module, name) is getattr(home, name)
