"""Requests to the API server, with the gatekeeper's discipline: one field manager, the release id
on every request, read-then-write with the read's resourceVersion, and errors in our types.

    a 409 Conflict on a write     re-read, re-apply the change to what is there now, write again
    429, 5xx, connection errors   retried with exponential backoff (tenacity); then TemporaryError
    403, 422 and other refusals   StepFailed naming the verb, the object and the API's reason
    404 on a read                 None (the caller decides what absence means)

Objects are plain dicts as the API serves them (JSON), so the logic that derives and compares
them is pure and needs no client. This module and ``connect`` are the only ones that import the
``kubernetes`` client.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import tenacity
import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from gatekeeper.domain.errors import StepFailed, TemporaryError

from .merge import object_patch
from .settings import FIELD_MANAGER

Obj = dict[str, Any]

# kind -> (API path prefix, resource plural). Only what the target reads or writes: the
# minimal Role (deploy/kubernetes/role.yaml) grants the same.
KINDS: dict[str, tuple[str, str]] = {
    "Deployment": ("/apis/apps/v1", "deployments"),
    "Service": ("/api/v1", "services"),
    "Pod": ("/api/v1", "pods"),
    "HTTPRoute": ("/apis/gateway.networking.k8s.io/v1", "httproutes"),
    "VirtualService": ("/apis/networking.istio.io/v1", "virtualservices"),
    "DestinationRule": ("/apis/networking.istio.io/v1", "destinationrules"),
}
API_VERSIONS = {
    kind: prefix.removeprefix("/apis/").removeprefix("/api/") for kind, (prefix, _) in KINDS.items()
}

MERGE_PATCH = "application/merge-patch+json"
TEMPORARY = {429, 500, 502, 503, 504}
CONFLICT_ATTEMPTS = 8  # concurrent writers between our read and our write, in a row
RETRY_ATTEMPTS = 12  # of one request meeting temporary errors (within retry_for_s)


@dataclass(frozen=True)
class Ref:
    """One namespaced object, named as messages name it: ``Deployment shop/web``."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    @property
    def collection(self) -> str:
        prefix, plural = KINDS[self.kind]
        return f"{prefix}/namespaces/{self.namespace}/{plural}"

    @property
    def path(self) -> str:
        return f"{self.collection}/{self.name}"


class NotFound(Exception):
    pass


class Conflict(Exception):
    """409: another writer changed the object since our read (or it exists already)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class _Transient(Exception):
    """A failure the same request may not meet again: retried here, then TemporaryError."""


class Api:
    """The target's requests; ``writes``, ``last_writes`` and ``conflicts`` say what it did."""

    def __init__(
        self,
        client: ApiClient,
        *,
        release_id: str,
        retry_for_s: float = 30.0,
        timeout_s: tuple[float, float] = (5.0, 30.0),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.release_id = release_id
        # The audit log names the release on every request, reads and deletes included.
        client.user_agent = f"gatekeeper (release {release_id})"
        self.retry_for_s = retry_for_s
        self.timeout_s = timeout_s
        self.sleep = sleep
        self.writes = 0
        self.conflicts = 0
        self.last_writes: list[str] = []  # the latest writes, "verb Kind ns/name" (records, tests)

    # -- reads --------------------------------------------------------------------------------

    def get(self, ref: Ref) -> Obj | None:
        try:
            return self._call("get", ref, "GET", ref.path)
        except NotFound:
            return None

    def list(self, kind: str, namespace: str, selector: dict[str, str]) -> list[Obj]:
        """Objects of ``kind`` whose labels include ``selector``."""
        ref = Ref(kind, namespace, "")
        query = [("labelSelector", ",".join(f"{k}={v}" for k, v in sorted(selector.items())))]
        found = self._call("list", ref, "GET", ref.collection, query=query)
        items: list[Obj] = found.get("items") or []
        return items

    # -- writes -------------------------------------------------------------------------------

    def create(self, ref: Ref, body: Obj) -> Obj:
        """Create ``body``; Conflict (reason AlreadyExists) when the name is taken."""
        body = copy.deepcopy(body)
        body.setdefault("apiVersion", API_VERSIONS[ref.kind])
        body.setdefault("kind", ref.kind)
        try:
            return self._write("create", ref, "POST", ref.collection, body, None)
        except NotFound as e:  # its namespace is gone
            raise StepFailed(str(e)) from e

    def update(self, ref: Ref, change: Callable[[Obj], Obj | None]) -> Obj | None:
        """Read ``ref``, let ``change`` turn a copy into what is wanted, and write the difference
        (labels, annotations, owners, spec) with the read's resourceVersion. Nothing is written
        when nothing differs; a 409 reads again and applies ``change`` to what is there now, so
        a concurrent edit is kept, not overwritten. None when the object does not exist."""
        for _ in range(CONFLICT_ATTEMPTS):
            current = self.get(ref)
            if current is None:
                return None
            wanted = change(copy.deepcopy(current))
            if wanted is None:
                return current
            patch = object_patch(current, wanted)
            if patch is None:
                return current
            patch.setdefault("metadata", {})["resourceVersion"] = current["metadata"][
                "resourceVersion"
            ]
            try:
                return self._write("patch", ref, "PATCH", ref.path, patch, MERGE_PATCH)
            except Conflict:
                self.conflicts += 1
            except NotFound:  # deleted since our read: read again (and find it gone)
                continue
        raise TemporaryError(
            f"patch {ref}: changed by another writer {CONFLICT_ATTEMPTS} times between our "
            "read and our write"
        )

    def delete(self, ref: Ref) -> bool:
        """Delete ``ref`` (its dependents in the background); False when it was gone."""
        try:
            self._write(
                "delete", ref, "DELETE", ref.path, {"propagationPolicy": "Background"}, None
            )
        except NotFound:
            return False
        return True

    def close(self) -> None:
        self.client.close()  # type: ignore[no-untyped-call]

    # -- requests -----------------------------------------------------------------------------

    def _write(
        self, verb: str, ref: Ref, method: str, path: str, body: Obj, content_type: str | None
    ) -> Obj:
        query = [("fieldManager", FIELD_MANAGER)] if method in ("POST", "PATCH") else []
        found = self._call(
            verb, ref, method, path, query=query, body=body, content_type=content_type
        )
        self.writes += 1
        self.last_writes = [*self.last_writes[-49:], f"{verb} {ref}"]
        return found

    def _call(
        self,
        verb: str,
        ref: Ref,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Obj | None = None,
        content_type: str | None = None,
    ) -> Obj:
        try:
            for attempt in tenacity.Retrying(
                retry=tenacity.retry_if_exception_type(_Transient),
                stop=tenacity.stop_after_delay(self.retry_for_s)
                | tenacity.stop_after_attempt(RETRY_ATTEMPTS),
                wait=tenacity.wait_random_exponential(multiplier=0.2, max=5.0),
                sleep=self.sleep,
                reraise=True,
            ):
                with attempt:
                    return self._once(verb, ref, method, path, query, body, content_type)
        except _Transient as e:
            raise TemporaryError(f"{e} (for {self.retry_for_s:g}s)", delay=2.0) from e
        raise AssertionError("unreachable")  # pragma: no cover - tenacity returns or raises

    def _once(
        self,
        verb: str,
        ref: Ref,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]],
        body: Obj | None,
        content_type: str | None,
    ) -> Obj:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        what = f"{verb} {ref}" if ref.name else f"{verb} {ref.kind} in {ref.namespace}"
        try:
            request = self.client.param_serialize(
                method=method,
                resource_path=path,
                query_params=list(query),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self.client.call_api(*request, _request_timeout=self.timeout_s)
            data = response.read()  # type: ignore[no-untyped-call]
        except ApiException as e:  # the client's own refusals (TLS errors among them)
            raise StepFailed(f"{what}: {e.reason or e}") from e
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise _Transient(f"{what}: the API server did not answer: {e}") from e
        status = int(response.status)
        if 200 <= status < 300:
            found: Obj = json.loads(data) if data else {}
            return found
        reason, message = _status(data, response.reason)
        said = f"{what}: {status} {reason}: {message}"
        if status == 404:
            raise NotFound(said)
        if status == 409:
            raise Conflict(reason, said)
        if status in TEMPORARY:
            raise _Transient(said)
        raise StepFailed(said)


def _status(data: bytes | None, fallback: str | None) -> tuple[str, str]:
    """The API's reason and message from its Status body."""
    try:
        body = json.loads(data or b"{}")
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    reason = str(body.get("reason") or fallback or "error")
    message = str(body.get("message") or (data or b"").decode(errors="replace")[:300])
    return reason, message
