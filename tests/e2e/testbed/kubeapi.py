"""A small REST client for the bed's own set-up work: apply, create, patch status, wait."""

from __future__ import annotations

import contextlib
import json
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

JSON = dict[str, Any]


class ApiError(RuntimeError):
    def __init__(self, method: str, path: str, response: httpx.Response) -> None:
        self.status_code = response.status_code
        super().__init__(f"{method} {path}: {response.status_code} {response.text[:500]}")


class KubeApi:
    def __init__(self, server: str, token: str, ca_file: Path, timeout: float = 30.0) -> None:
        self.server = server
        context = ssl.create_default_context(cafile=str(ca_file))
        self._client = httpx.Client(
            base_url=server,
            verify=context,
            timeout=timeout,
            headers={"Authorization": f"Bearer {token}"},
        )

    def close(self) -> None:
        self._client.close()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200, 201, 202),
    ) -> JSON:
        content = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if body is not None else {}
        response = self._client.request(
            method, path, content=content, headers=headers, params=params
        )
        if response.status_code not in ok:
            raise ApiError(method, path, response)
        if not response.content:
            return {}
        data: JSON = response.json()
        return data

    def stream(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> contextlib.AbstractContextManager[httpx.Response]:
        """A streamed response, for watches (`?watch=1`): iterate its lines."""
        return self._client.stream(method, path, params=params, timeout=timeout)

    def get(self, path: str, params: dict[str, str] | None = None) -> JSON:
        return self.request("GET", path, params=params)

    def exists(self, path: str) -> bool:
        response = self._client.get(path)
        return response.status_code == 200

    def create(self, path: str, body: JSON) -> JSON:
        return self.request("POST", path, body, ok=(200, 201, 202, 409))

    def merge_patch(self, path: str, body: JSON) -> JSON:
        return self.request("PATCH", path, body, content_type="application/merge-patch+json")

    def apply(self, path: str, body: JSON, manager: str = "gatekeeper-testbed") -> JSON:
        """Server-side apply (JSON is YAML); needed for the CRDs too large for client-side apply."""
        return self.request(
            "PATCH",
            path,
            body,
            content_type="application/apply-patch+yaml",
            params={"fieldManager": manager, "force": "true"},
        )

    def delete(self, path: str, body: JSON | None = None) -> None:
        self.request("DELETE", path, body, ok=(200, 202, 404))

    def wait_for(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except (ApiError, httpx.HTTPError) as exc:
                last = exc
            time.sleep(0.2)
        raise TimeoutError(
            f"timed out after {timeout:.0f}s waiting for {what}" + (f": {last}" if last else "")
        )


def object_path(obj: JSON) -> str:
    """The REST path of a built-in or CRD-backed object, from apiVersion, kind and name."""
    api_version: str = obj["apiVersion"]
    kind: str = obj["kind"]
    name: str = obj["metadata"]["name"]
    namespace = obj["metadata"].get("namespace")
    prefix = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    plural = _PLURALS.get(kind) or kind.lower() + "s"
    ns = f"/namespaces/{namespace}" if namespace else ""
    return f"{prefix}{ns}/{plural}/{name}"


_PLURALS = {
    "CustomResourceDefinition": "customresourcedefinitions",
    "ClusterRole": "clusterroles",
    "ClusterRoleBinding": "clusterrolebindings",
    "Role": "roles",
    "RoleBinding": "rolebindings",
    "ConfigMap": "configmaps",
    "Namespace": "namespaces",
    "Node": "nodes",
    "ServiceAccount": "serviceaccounts",
}
