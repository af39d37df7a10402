"""The API client: from a kubeconfig (--kubeconfig, else KUBECONFIG or ~/.kube/config), else the
pod's in-cluster service account."""

from __future__ import annotations

import os
from pathlib import Path

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

from gatekeeper.domain.errors import InvalidInput


def connect(kubeconfig: str | None = None) -> client.ApiClient:
    """The client for ``kubeconfig``; without one, the default kubeconfig, then in-cluster."""
    if kubeconfig:
        if not Path(kubeconfig).expanduser().is_file():
            raise InvalidInput(f"--kubeconfig {kubeconfig}: no such file")
        return _from_file(kubeconfig, f"--kubeconfig {kubeconfig}")
    env = os.environ.get("KUBECONFIG")
    if env:
        if not any(Path(p).expanduser().is_file() for p in env.split(os.pathsep) if p):
            raise InvalidInput(f"KUBECONFIG {env}: no such file")
        return _from_file(None, f"KUBECONFIG {env}")
    default = Path.home() / ".kube" / "config"
    if default.is_file():
        return _from_file(str(default), str(default))
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = client.Configuration()
        try:
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
        except ConfigException as e:
            raise InvalidInput(f"in-cluster config: {e}") from e
        return client.ApiClient(configuration)
    raise InvalidInput(
        "the kubernetes target needs credentials: give --kubeconfig, set KUBECONFIG, or run "
        "in a pod (in-cluster config)"
    )


def _from_file(path: str | None, source: str) -> client.ApiClient:
    try:
        found: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=path
        )
        return found
    except (ConfigException, OSError, ValueError, KeyError, TypeError) as e:
        raise InvalidInput(f"{source}: not a usable kubeconfig: {e}") from e
