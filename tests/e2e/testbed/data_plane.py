"""Brings up the bed's data plane: pod network, kubelet for app pods, Traefik, Prometheus."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.e2e.testbed import prometheus, traefik
from tests.e2e.testbed.kubeapi import KubeApi
from tests.e2e.testbed.kubelet import Kubelet
from tests.e2e.testbed.podnet import PodNetwork, open_pod_network
from tests.e2e.testbed.process import ManagedProcess, free_port

KUBELET_USER = "testbed:kubelet"

StartFn = Callable[[str, list[str]], ManagedProcess]


@dataclass
class DataPlane:
    """What the bed keeps of its data plane while it runs."""

    gateway_url: str
    traefik_metrics_url: str
    prometheus_url: str
    traefik: ManagedProcess
    prometheus: ManagedProcess
    network: PodNetwork | None = None
    kubelet: Kubelet | None = None


@dataclass(frozen=True)
class Credentials:
    """The tokens of the data plane's own API users (written to the API server's token file)."""

    traefik_token: str
    prometheus_token: str
    kubelet_token: str

    def token_lines(self) -> str:
        # The kubelet writes pod status and deletes pods as any node would; RBAC without the
        # Node authorizer has no node role to bind, so it is a master under a name of its own.
        return (
            f'{self.kubelet_token},{KUBELET_USER},uid-kubelet,"system:masters"\n'
            f"{self.traefik_token},{traefik.USER},uid-traefik\n"
            f"{self.prometheus_token},{prometheus.USER},uid-prometheus\n"
        )


def launch(
    api: KubeApi,
    root: Path,
    server: str,
    ca_file: Path,
    traefik_binary: Path,
    prometheus_binary: Path,
    credentials: Credentials,
    start: StartFn,
) -> DataPlane:
    """Installs RBAC and the Gateway and starts Traefik and Prometheus; does not wait for them.

    The Gateway API CRDs must be established already.
    """
    ports = traefik.TraefikPorts(web=free_port(), metrics=free_port())
    api.apply(
        f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{prometheus.CLUSTER_ROLE['metadata']['name']}",
        prometheus.CLUSTER_ROLE,
    )
    binding = prometheus.CLUSTER_ROLE_BINDING
    api.apply(
        f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{binding['metadata']['name']}",
        binding,
    )
    traefik.install(api, ports.web)

    traefik_token = _secret_file(root / "traefik.token", credentials.traefik_token)
    traefik_proc = start(
        "traefik", traefik.argv(traefik_binary, server, traefik_token, ca_file, ports)
    )

    prom_token = _secret_file(root / "prometheus.token", credentials.prometheus_token)
    metrics_address = f"127.0.0.1:{ports.metrics}"
    config_file = root / "prometheus.yml"
    config_file.write_text(prometheus.config(server, prom_token, ca_file, metrics_address))
    prom_port = free_port()
    prom_proc = start(
        "prometheus",
        prometheus.argv(prometheus_binary, config_file, root / "prometheus-data", prom_port),
    )
    return DataPlane(
        gateway_url=f"http://127.0.0.1:{ports.web}",
        traefik_metrics_url=f"http://{metrics_address}",
        prometheus_url=f"http://127.0.0.1:{prom_port}",
        traefik=traefik_proc,
        prometheus=prom_proc,
    )


def finish(plane: DataPlane, api: KubeApi, kubelet_api: KubeApi, root: Path, logs: Path) -> None:
    """Waits for Traefik (ping, Gateway programmed) and Prometheus; starts the app kubelet."""
    plane.network = open_pod_network()
    plane.kubelet = Kubelet(kubelet_api, plane.network, root / "app-pods", logs / "kubelet.log")
    plane.kubelet.start()
    plane.traefik.wait_until(
        lambda: _http_ok(f"{plane.traefik_metrics_url}/ping"), 30, "answering /ping"
    )
    plane.traefik.wait_until(
        lambda: traefik.gateway_programmed(api), 30, "programming the bed's Gateway"
    )
    plane.prometheus.wait_until(lambda: _http_ok(f"{plane.prometheus_url}/-/ready"), 30, "ready")


def stop(plane: DataPlane) -> None:
    """Stops the app processes and removes the pod network's route (processes stop with the bed)."""
    if plane.kubelet is not None:
        plane.kubelet.stop()
    if plane.network is not None:
        plane.network.close()


def _secret_file(path: Path, content: str) -> Path:
    path.write_text(content)
    path.chmod(0o600)
    return path


def _http_ok(url: str) -> bool:
    return httpx.get(url, timeout=2.0).status_code == 200
