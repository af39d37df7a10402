"""The test bed's images: what a container runs, by Kubernetes' rules for command, args and the
image's entrypoint and cmd (tests/e2e/testbed/images.py, podspec.py)."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from tests.e2e.testbed import podspec
from tests.e2e.testbed.images import DEMO_IMAGES, Image, ImageRegistry, default_registry

IMAGE = Image(entrypoint=("python", "-m", "app"), cmd=("--port", "80"), env={"MODE": "image"})


def container(**fields: Any) -> dict[str, Any]:
    return {"name": "app", "image": "app:1", **fields}


@pytest.mark.parametrize(
    ("fields", "argv"),
    [
        ({}, [sys.executable, "-m", "app", "--port", "80"]),  # entrypoint + cmd
        ({"args": ["--port", "$(PORT)"]}, [sys.executable, "-m", "app", "--port", "8080"]),
        ({"args": []}, [sys.executable, "-m", "app", "--port", "80"]),  # empty args: none
        ({"command": ["sh", "-c", "true"]}, ["sh", "-c", "true"]),  # the image is ignored
        ({"command": ["sh"], "args": ["-c", "$(PORT)"]}, ["sh", "-c", "8080"]),
    ],
)
def test_a_container_runs_its_command_or_else_its_images_entrypoint(
    fields: dict[str, Any], argv: list[str]
) -> None:
    assert podspec.container_argv(container(**fields), {"PORT": "8080"}, IMAGE) == argv


def test_the_images_own_argv_is_never_expanded() -> None:
    image = Image(entrypoint=("run", "$(PORT)"))
    assert podspec.container_argv(container(), {"PORT": "8080"}, image) == ["run", "$(PORT)"]


def test_a_container_without_a_command_or_image_says_so() -> None:
    with pytest.raises(ValueError, match="has no command and its image 'app:1' is not in"):
        podspec.container_argv(container(), {}, None)


def test_the_containers_env_overrides_the_images() -> None:
    pod = {"metadata": {"name": "p", "namespace": "n"}, "spec": {}}
    spec = container(env=[{"name": "MODE", "value": "container"}])
    env = podspec.container_env(pod, spec, "10.0.0.1", "127.0.0.1", lambda k, n: None, IMAGE.env)
    assert env["MODE"] == "container"
    env = podspec.container_env(
        pod, container(), "10.0.0.1", "127.0.0.1", lambda k, n: None, IMAGE.env
    )
    assert env["MODE"] == "image"
    assert env["TESTBED_IMAGE"] == "app:1"


def test_the_registry_registers_an_argv_and_refuses_a_bare_string() -> None:
    registry = ImageRegistry()
    registry.register("tool:1", ["python", "-m", "tool"], cmd=["--x"], env={"K": "v"})
    assert registry.lookup("tool:1") == Image(("python", "-m", "tool"), ("--x",), {"K": "v"})
    assert registry.lookup("tool:2") is None
    with pytest.raises(TypeError, match="list of words"):
        registry.register("tool:3", "python -m tool")


def test_the_bed_starts_with_the_demo_images() -> None:
    registry = default_registry()
    for tag in ("", "-bad", "-never-ready", "-crash", "-crash-later", "-slow-start"):
        assert f"demo:v2{tag}" in registry
    assert "--error-rate" in DEMO_IMAGES["demo:v2-bad"].cmd
    assert DEMO_IMAGES["demo:v2-bad"].cmd[1] == "0.08"
