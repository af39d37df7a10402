"""A coordination.k8s.io/v1 Lease for electing one controller among the service's replicas.

The Lease names its holder, its duration and when it was last renewed; taking it over
(free, or its renewal older than its duration) is a write with the read's
resourceVersion, so of two standbys that try at once one gets a 409 and loses. Every
takeover counts one more ``leaseTransitions``. The epoch the store fences with is kept
in the store (the engine advances it on each new term), so a Lease deleted and created
again never sends an epoch back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from gatekeeper.domain.errors import TemporaryError

from .connect import connect

PREFIX = "/apis/coordination.k8s.io/v1"
POD_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
_TIMEOUT = (5.0, 10.0)


@dataclass(frozen=True)
class Acquired:
    """This holder has the Lease; ``new_term`` when it was just taken (not renewed)."""

    new_term: bool
    transitions: int


def micro_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def pod_namespace() -> str:
    try:
        return POD_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


class KubernetesLeaseClient:
    """Reads and writes one Lease object."""

    def __init__(self, client: ApiClient, namespace: str, name: str) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.path = f"{PREFIX}/namespaces/{namespace}/leases/{name}"

    @classmethod
    def connect(
        cls, name: str, namespace: str | None, kubeconfig: str | None
    ) -> KubernetesLeaseClient:
        return cls(connect(kubeconfig), namespace or pod_namespace(), name)

    def close(self) -> None:
        self.client.close()  # type: ignore[no-untyped-call]

    def try_acquire(self, holder: str, now: datetime, duration_s: float) -> Acquired | None:
        """Take the Lease when it is free or expired, renew it when ``holder`` has it;
        None when another holder's renewal is still within its duration."""
        current = self._request("GET", self.path)
        spec = {
            "holderIdentity": holder,
            "leaseDurationSeconds": max(1, round(duration_s)),
            "acquireTime": micro_time(now),
            "renewTime": micro_time(now),
            "leaseTransitions": 0,
        }
        if current is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": spec,
            }
            created = self._request("POST", f"{PREFIX}/namespaces/{self.namespace}/leases", body)
            return None if created is None else Acquired(True, 0)
        old = current.get("spec") or {}
        transitions = int(old.get("leaseTransitions") or 0)
        renewed = _parse_time(old.get("renewTime"))
        valid = (
            renewed is not None
            and renewed + timedelta(seconds=float(old.get("leaseDurationSeconds") or duration_s))
            > now
        )
        if old.get("holderIdentity") == holder and valid:
            spec.update(acquireTime=old.get("acquireTime"), leaseTransitions=transitions)
            return Acquired(False, transitions) if self._replace(current, spec) else None
        if old.get("holderIdentity") and valid:
            return None
        spec["leaseTransitions"] = transitions + 1
        return Acquired(True, transitions + 1) if self._replace(current, spec) else None

    def renew(self, holder: str, now: datetime, duration_s: float) -> bool:
        current = self._request("GET", self.path)
        if current is None or (current.get("spec") or {}).get("holderIdentity") != holder:
            return False
        spec = dict(current["spec"])
        spec.update(renewTime=micro_time(now), leaseDurationSeconds=max(1, round(duration_s)))
        return self._replace(current, spec)

    def release(self, holder: str) -> None:
        current = self._request("GET", self.path)
        if current is None or (current.get("spec") or {}).get("holderIdentity") != holder:
            return
        spec = dict(current["spec"])
        spec.update(holderIdentity=None, leaseDurationSeconds=1)
        self._replace(current, spec)

    def _replace(self, current: dict[str, Any], spec: dict[str, Any]) -> bool:
        """Write ``spec`` with the read's resourceVersion; False on a 409 (another writer)."""
        body = {**current, "spec": spec}
        return self._request("PUT", self.path, body) is not None

    def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """The answer; None for a 404 on a read and a 409 on a write."""
        what = f"{method} Lease {self.namespace}/{self.name}"
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            request = self.client.param_serialize(
                method=method,
                resource_path=path,
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self.client.call_api(*request, _request_timeout=_TIMEOUT)
            data = response.read()  # type: ignore[no-untyped-call]
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as e:
            raise TemporaryError(f"{what}: the API server did not answer: {e}") from e
        status = int(response.status)
        if 200 <= status < 300:
            found: dict[str, Any] = json.loads(data) if data else {}
            return found
        if status in (404, 409):
            return None
        text = (data or b"").decode(errors="replace")[:300]
        raise TemporaryError(f"{what}: {status}: {text}")
