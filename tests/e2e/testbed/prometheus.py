"""The bed's Prometheus: discovers app pods through the API server and scrapes them every second.

Debian's prometheus is built without Kubernetes service discovery, so the bed runs one built
by scripts/testbed-build from Prometheus' Go module with only that discovery plugin.

Job `pods`: `kubernetes_sd_configs` (role pod, the bed's app label as selector) with a token of
its own; it keeps Running pods' container ports named `metrics` or `http` (name one of them per
pod) and sets `app` and `version` from the pod's labels, plus `namespace`, `pod` and
`container`. `honor_labels` keeps an app's own `app`/`version` labels as they are rather than
renaming them `exported_*`. Job `traefik`: Traefik's metrics entryPoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.e2e.testbed.kubelet import APP_LABEL, APP_LABEL_VALUE

USER = "testbed:prometheus"
PORT_NAMES = "metrics|http"

CLUSTER_ROLE: dict[str, Any] = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "ClusterRole",
    "metadata": {"name": "testbed-prometheus"},
    "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
}
CLUSTER_ROLE_BINDING: dict[str, Any] = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "ClusterRoleBinding",
    "metadata": {"name": "testbed-prometheus"},
    "roleRef": {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "testbed-prometheus",
    },
    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
}


def _meta_label(label: str) -> str:
    """Prometheus' name for a pod label's meta label (non-alphanumerics become `_`)."""
    return "__meta_kubernetes_pod_label_" + "".join(c if c.isalnum() else "_" for c in label)


def config(server: str, token_file: Path, ca_file: Path, traefik_metrics: str) -> str:
    sd = {
        "role": "pod",
        "api_server": server,
        "authorization": {"credentials_file": str(token_file)},
        "tls_config": {"ca_file": str(ca_file)},
        "selectors": [{"role": "pod", "label": f"{APP_LABEL}={APP_LABEL_VALUE}"}],
    }

    def copy(source: str, target: str) -> dict[str, Any]:
        return {"source_labels": [source], "target_label": target}

    pods = {
        "job_name": "pods",
        "honor_labels": True,
        "kubernetes_sd_configs": [sd],
        "relabel_configs": [
            {
                "source_labels": [_meta_label(APP_LABEL)],
                "regex": APP_LABEL_VALUE,
                "action": "keep",
            },
            {
                "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                "regex": PORT_NAMES,
                "action": "keep",
            },
            {
                "source_labels": ["__meta_kubernetes_pod_phase"],
                "regex": "Running",
                "action": "keep",
            },
            copy("__meta_kubernetes_pod_label_app", "app"),
            copy("__meta_kubernetes_pod_label_version", "version"),
            copy("__meta_kubernetes_namespace", "namespace"),
            copy("__meta_kubernetes_pod_name", "pod"),
            copy("__meta_kubernetes_pod_container_name", "container"),
        ],
    }
    traefik = {"job_name": "traefik", "static_configs": [{"targets": [traefik_metrics]}]}
    document = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [pods, traefik],
    }
    return yaml.safe_dump(document, sort_keys=False)


def argv(prometheus: Path, config_file: Path, data_dir: Path, port: int) -> list[str]:
    return [
        str(prometheus),
        f"--config.file={config_file}",
        f"--storage.tsdb.path={data_dir}",
        "--storage.tsdb.retention.time=1d",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
