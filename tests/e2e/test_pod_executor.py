"""The bed's executor: pods labelled as Argo workflow pods run here, other pods stay kwok's."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kubernetes import client

WORKFLOW_LABEL = "workflows.argoproj.io/workflow"


def wait_for_phase(
    core: client.CoreV1Api, namespace: str, name: str, phases: set[str]
) -> client.V1Pod:
    deadline = time.monotonic() + 60
    while True:
        pod = core.read_namespaced_pod(name, namespace)
        assert pod.status is not None
        phase = pod.status.phase
        if phase is not None and phase in phases:
            return pod
        if time.monotonic() > deadline:
            pytest.fail(f"pod {namespace}/{name} still {phase} after 60s")
        time.sleep(0.25)


def test_workflow_labelled_pod_runs_locally_and_reports_its_exit_code(
    kube: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    core = client.CoreV1Api(kube)
    marker = tmp_path / "ran"
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="step", labels={WORKFLOW_LABEL: "hand-made"}),
        spec=client.V1PodSpec(
            restart_policy="Never",
            containers=[
                client.V1Container(
                    name="main",
                    image="registry.invalid/shell:1",
                    command=["/bin/sh", "-c"],
                    args=[f'echo "$GREETING from $POD_NAME" > {marker}; exit 3'],
                    env=[
                        client.V1EnvVar(name="GREETING", value="hello"),
                        client.V1EnvVar(
                            name="POD_NAME",
                            value_from=client.V1EnvVarSource(
                                field_ref=client.V1ObjectFieldSelector(field_path="metadata.name")
                            ),
                        ),
                    ],
                )
            ],
        ),
    )

    core.create_namespaced_pod(namespace, pod)
    finished = wait_for_phase(core, namespace, "step", {"Succeeded", "Failed"})

    assert finished.status is not None
    assert finished.status.phase == "Failed"
    assert finished.status.container_statuses is not None
    (main,) = finished.status.container_statuses
    assert main.state is not None and main.state.terminated is not None
    assert main.state.terminated.exit_code == 3
    assert marker.read_text() == "hello from step\n"


def test_ordinary_pod_is_made_running_by_kwok_without_running_anything(
    kube: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    core = client.CoreV1Api(kube)
    marker = tmp_path / "ran"
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="plain"),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(
                    name="main",
                    image="registry.invalid/shell:1",
                    command=["/bin/sh", "-c", f"touch {marker}"],
                )
            ]
        ),
    )

    core.create_namespaced_pod(namespace, pod)
    running = wait_for_phase(core, namespace, "plain", {"Running"})

    assert running.status is not None and running.status.container_statuses is not None
    assert running.status.container_statuses[0].ready is True
    time.sleep(1)
    assert not marker.exists()
