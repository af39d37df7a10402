"""A real Argo controller and argo-server on the bed; workflow steps run as local processes."""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.testbed import ClusterBed
from workflows.client import ArgoClient

FINISHED = {"Succeeded", "Failed", "Error"}


def shell_step(name: str, script: str) -> dict[str, Any]:
    """A container template whose command the bed's executor runs on this machine."""
    return {
        "name": name,
        "inputs": {"parameters": [{"name": "word", "value": ""}]},
        "container": {
            "image": "registry.invalid/shell:1",
            "command": ["/bin/sh", "-c"],
            "args": [script],
        },
    }


def submit(argo: httpx.Client, namespace: str, workflow: dict[str, Any]) -> str:
    response = argo.post(
        f"/api/v1/workflows/{namespace}", json={"namespace": namespace, "workflow": workflow}
    )
    assert response.status_code == 200, response.text
    name: str = response.json()["metadata"]["name"]
    return name


def wait_finished(
    argo: httpx.Client, namespace: str, name: str, timeout: float = 120
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = argo.get(f"/api/v1/workflows/{namespace}/{name}")
        assert response.status_code == 200, response.text
        workflow: dict[str, Any] = response.json()
        if workflow.get("status", {}).get("phase") in FINISHED:
            return workflow
        if time.monotonic() > deadline:
            pytest.fail(
                f"workflow {namespace}/{name} not finished after {timeout:.0f}s: "
                f"{workflow.get('status')}"
            )
        time.sleep(0.5)


def nodes_by_display_name(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["displayName"]: n for n in workflow["status"]["nodes"].values()}


def test_argo_server_reports_the_pinned_version(bed: ClusterBed, argo: httpx.Client) -> None:
    response = argo.get("/api/v1/version")

    assert response.status_code == 200
    assert response.json()["version"] == bed.versions["ARGO_VERSION"]


def test_argo_server_refuses_a_request_without_a_token(bed: ClusterBed) -> None:
    response = httpx.get(f"{bed.argo_url}/api/v1/workflows/{bed.argo_namespace}", timeout=10)

    assert response.status_code == 401


def test_two_step_workflow_runs_its_steps_as_local_processes_and_succeeds(
    bed: ClusterBed, argo: httpx.Client, tmp_path: Path
) -> None:
    trail = tmp_path / "trail.txt"
    token = secrets.token_hex(4)
    workflow = {
        "metadata": {"generateName": "two-steps-"},
        "spec": {
            "entrypoint": "main",
            "templates": [
                {
                    "name": "main",
                    "steps": [
                        [{"name": "first", "template": "first"}],
                        [
                            {
                                "name": "second",
                                "template": "second",
                                "arguments": {
                                    "parameters": [
                                        {"name": "word", "value": "{{steps.first.outputs.result}}"}
                                    ]
                                },
                            }
                        ],
                    ],
                },
                shell_step("first", f"echo first-$$ >> {trail}; echo {token}"),
                shell_step(
                    "second", f'echo "second got {{{{inputs.parameters.word}}}}" >> {trail}'
                ),
            ],
        },
    }

    name = submit(argo, bed.argo_namespace, workflow)
    finished = wait_finished(argo, bed.argo_namespace, name)

    assert finished["status"]["phase"] == "Succeeded", finished["status"].get("message")
    nodes = nodes_by_display_name(finished)
    assert nodes["first"]["phase"] == "Succeeded"
    assert nodes["second"]["phase"] == "Succeeded"
    lines = trail.read_text().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("first-") and lines[0] != "first-$$"  # a real shell expanded $$
    assert lines[1] == f"second got {token}"  # step one's stdout reached step two through Argo


def test_workflow_whose_second_step_exits_1_fails_and_runs_its_exit_handler(
    bed: ClusterBed, argo: httpx.Client, tmp_path: Path
) -> None:
    trail = tmp_path / "trail.txt"
    workflow = {
        "metadata": {"generateName": "fails-then-cleans-up-"},
        "spec": {
            "entrypoint": "main",
            "onExit": "cleanup",
            "templates": [
                {
                    "name": "main",
                    "steps": [
                        [{"name": "first", "template": "first"}],
                        [{"name": "second", "template": "second"}],
                        [{"name": "third", "template": "third"}],
                    ],
                },
                shell_step("first", f"echo first >> {trail}"),
                shell_step("second", f"echo second >> {trail}; exit 1"),
                shell_step("third", f"echo third >> {trail}"),
                shell_step("cleanup", f'echo "cleanup saw {{{{workflow.status}}}}" >> {trail}'),
            ],
        },
    }

    name = submit(argo, bed.argo_namespace, workflow)
    finished = wait_finished(argo, bed.argo_namespace, name)

    assert finished["status"]["phase"] == "Failed"
    nodes = nodes_by_display_name(finished)
    assert nodes["first"]["phase"] == "Succeeded"
    assert nodes["second"]["phase"] == "Failed"
    assert "exit code 1" in nodes["second"]["message"]
    assert "third" not in nodes
    exit_handler = nodes[f"{name}.onExit"]
    assert exit_handler["phase"] == "Succeeded"
    assert trail.read_text().splitlines() == ["first", "second", "cleanup saw Failed"]


def test_script_template_runs_its_source_locally(
    bed: ClusterBed, argo: httpx.Client, tmp_path: Path
) -> None:
    trail = tmp_path / "trail.txt"
    workflow = {
        "metadata": {"generateName": "script-"},
        "spec": {
            "entrypoint": "say",
            "templates": [
                {
                    "name": "say",
                    "script": {
                        "image": "registry.invalid/shell:1",
                        "command": ["/bin/sh"],
                        "source": f"echo from-script > {trail}\necho done\n",
                    },
                }
            ],
        },
    }

    name = submit(argo, bed.argo_namespace, workflow)
    finished = wait_finished(argo, bed.argo_namespace, name)

    assert finished["status"]["phase"] == "Succeeded", finished["status"].get("message")
    assert trail.read_text() == "from-script\n"
    assert nodes_by_display_name(finished)[name]["outputs"]["result"] == "done"


def test_the_gatekeepers_client_watch_streams_each_change_of_a_workflow(
    bed: ClusterBed, argo: httpx.Client, tmp_path: Path
) -> None:
    # Given a workflow of two steps that each take a moment
    workflow = {
        "metadata": {"generateName": "watched-"},
        "spec": {
            "entrypoint": "main",
            "templates": [
                {
                    "name": "main",
                    "steps": [
                        [{"name": "first", "template": "first"}],
                        [{"name": "second", "template": "second"}],
                    ],
                },
                shell_step("first", "sleep 1"),
                shell_step("second", "sleep 1"),
            ],
        },
    }
    name = submit(argo, bed.argo_namespace, workflow)
    client = ArgoClient(bed.argo_url, bed.argo_namespace, bed.admin_token)
    events: list[float] = []
    stop = threading.Event()

    def changed() -> None:
        events.append(time.monotonic())
        view = client.status(name)
        if view is not None and view.final:
            stop.set()

    # When the gatekeeper's client watches it through argo-server
    watcher = threading.Thread(target=client.watch, args=(name, changed, stop), daemon=True)
    watcher.start()
    finished = wait_finished(argo, bed.argo_namespace, name)
    stop.wait(15)
    client.close()
    watcher.join(10)

    # Then each change came down the stream, the last one the workflow's end
    assert finished["status"]["phase"] == "Succeeded"
    assert stop.is_set(), f"the stream never said the workflow ended ({len(events)} events)"
    assert len(events) >= 4, events  # running, each step's node, its end
    assert not watcher.is_alive()
