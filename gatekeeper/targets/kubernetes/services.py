"""What the Kubernetes routers share: the base of each, the stable Service's pin to one version,
and the Services the target creates for the candidate.

The user's stable Service usually selects the app's pods by app label alone, and the
candidate's pods carry that label too. While a candidate runs, the gateway-api and
service-selector routers pin the stable Service to a version (its selector gains the version
label, the original kept on it by ``marks``); afterwards the original selector comes back, a
version label it had following the version now stable. The candidate's own Service selects
stable's selector plus the role label that only the candidate's pods carry.

No module here imports the ``kubernetes`` client: objects come and go through the
workloads' ``Api``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gatekeeper.domain.errors import StepFailed

from . import derive, marks, pods
from .api import Conflict, Ref
from .settings import CANDIDATE, MANAGED_BY, RELEASE_ID, ROLE_LABEL

if TYPE_CHECKING:
    from .workloads import KubernetesWorkloads

Obj = dict[str, Any]
POD_TEMPLATE_HASH = "pod-template-hash"  # set by the Deployment controller on its pods


class RouterBase:
    """A router over the workloads' API and settings; ``finalize`` and ``restore`` are each
    router's, in the order its objects need."""

    drains = True  # traffic leaves the candidate's pods before they are deleted

    def __init__(self, workloads: KubernetesWorkloads) -> None:
        self.workloads = workloads
        self.s = workloads.s
        self.api = workloads.api
        self.service_ref = Ref("Service", self.s.namespace, self.s.service)
        workloads.attach(self)

    # -- each router's own ----------------------------------------------------------------------

    def weight(self) -> int:
        raise NotImplementedError

    def set_weight(self, weight: int) -> None:
        raise NotImplementedError

    def isolate(self) -> None:
        raise NotImplementedError

    def restore(self, stable_version: str) -> None:
        raise NotImplementedError

    def problems(self) -> list[str]:
        raise NotImplementedError

    # -- shared -----------------------------------------------------------------------------------

    def settle(self) -> None:
        """Give the data plane ``drain`` to apply a change of a Service's selector (the
        EndpointSlice controller fills its endpoints, then the Gateway reads them) before a
        route sends users to it."""
        if self.s.drain_s > 0:
            self.workloads.clock.sleep(self.s.drain_s)

    def verify_weight(self, weight: int) -> bool:
        return self.weight() == weight

    def read_back(self, weight: int) -> None:
        actual = self.weight()
        if actual != weight:
            raise StepFailed(
                f"router {self.s.router}: the candidate's weight reads {actual}% after "
                f"setting {weight}%"
            )

    def require_ready_candidate(self, weight: int) -> None:
        ready = [
            p
            for p in self.workloads.pods(self.s.candidate_version, role=CANDIDATE)
            if pods.ready(p)
        ]
        if not ready:
            raise StepFailed(
                f"weight {weight}: {self.workloads.candidate_ref} has no ready pod to take it"
            )

    # -- the stable Service -------------------------------------------------------------------

    def service_problems(self, *, spans_versions: bool = False) -> list[str]:
        """The stable Service exists and selects stable's pods (all versions' pods, when the
        router counts on one Service spanning them)."""
        svc = self.api.get(self.service_ref)
        if svc is None:
            return [f"{self.service_ref} not found (target.service, default the app's name)"]
        selector = (svc.get("spec") or {}).get("selector") or {}
        if not selector:
            return [f"{self.service_ref} has no selector: the router needs one over the app's pods"]
        stable = self.api.get(self.workloads.stable_ref)
        if stable is None:
            return []
        labels = derive.template_labels(stable)
        plain = {k: v for k, v in selector.items() if k != self.s.version_label}
        if any(labels.get(k) != v for k, v in plain.items()):
            return [
                f"{self.service_ref} selects {_text(selector)}, which "
                f"{self.workloads.stable_ref}'s pods ({_text(labels)}) do not match"
            ]
        if spans_versions and self.s.version_label in selector and marks.original(svc) is None:
            return [
                f"{self.service_ref} selects {self.s.version_label}="
                f"{selector[self.s.version_label]} only; router {self.s.router} needs one "
                "Service over both versions' pods"
            ]
        return []

    def pin(self, version: str) -> None:
        """The stable Service selects ``version``'s pods only."""

        def change(svc: Obj) -> Obj | None:
            selector = dict(svc["spec"].get("selector") or {})
            if selector.get(self.s.version_label) == version and marks.original(svc):
                return None
            marks.mark(svc, self.s.release_id, lambda: {"selector": dict(selector)})
            svc["spec"]["selector"] = {**selector, self.s.version_label: version}
            return svc

        if self.api.update(self.service_ref, change) is None:
            raise StepFailed(f"{self.service_ref} not found")

    def pinned_version(self) -> str | None:
        svc = self.api.get(self.service_ref)
        if svc is None or marks.original(svc) is None:
            return None
        selector = svc["spec"].get("selector") or {}
        found = selector.get(self.s.version_label)
        return str(found) if found is not None else None

    def unpin(self, version: str) -> None:
        """The stable Service's selector as the user wrote it, a version in it now ``version``."""

        def change(svc: Obj) -> Obj | None:
            record = marks.unmark(svc)
            if record is None:
                return None
            selector = dict(record.get("selector") or {})
            if self.s.version_label in selector:
                selector[self.s.version_label] = version
            svc["spec"]["selector"] = selector
            return svc

        self.api.update(self.service_ref, change)

    def pin_promoted(self) -> None:
        """After promotion: the stable Service selects stable's new pods only. The candidate's
        pods carry the same version, so the pin names stable's pod-template-hash (the label its
        ReplicaSet gives its pods), and the candidate's pods can leave every routed Service
        before they are deleted."""
        pinned = self.promoted_labels()

        def change(svc: Obj) -> Obj | None:
            marks.mark(svc, self.s.release_id, lambda: {"selector": dict(svc["spec"]["selector"])})
            record = marks.original(svc) or {}
            selector = {**(record.get("selector") or {}), **pinned}
            if svc["spec"].get("selector") == selector:
                return None
            svc["spec"]["selector"] = selector
            return svc

        self.api.update(self.service_ref, change)

    def promoted_labels(self) -> dict[str, str]:
        """Labels only stable's pods carry once it runs the candidate's version: the version
        and its ReplicaSet's pod-template-hash (when its rollout left one)."""
        self.workloads.wait_rollout(self.workloads.stable_ref, "stable")
        version = self.s.candidate_version
        found = {
            _labels(p).get(POD_TEMPLATE_HASH)
            for p in self.workloads.pods(version, role="stable")
            if pods.ready(p)
        }
        labels = {self.s.version_label: version}
        if len(found) == 1 and None not in found:
            labels[POD_TEMPLATE_HASH] = str(found.pop())
        return labels

    def original_selector(self) -> dict[str, str]:
        svc = self.api.get(self.service_ref)
        if svc is None:
            raise StepFailed(f"{self.service_ref} not found")
        record = marks.original(svc)
        selector = dict(record["selector"]) if record else dict(svc["spec"].get("selector") or {})
        selector.pop(self.s.version_label, None)
        return selector

    # -- the candidate's Services ---------------------------------------------------------------

    def ensure_candidate_service(self, name: str) -> None:
        """A Service of the candidate's pods, with stable's ports, owned by the stable Service."""
        stable_svc = self.api.get(self.service_ref)
        if stable_svc is None:
            raise StepFailed(f"{self.service_ref} not found")
        ref = Ref("Service", self.s.namespace, name)
        ports = [
            {k: p[k] for k in ("name", "port", "targetPort", "protocol", "appProtocol") if k in p}
            for p in stable_svc["spec"].get("ports") or []
        ]
        wanted: Obj = {
            "metadata": {
                "name": name,
                "namespace": self.s.namespace,
                "labels": {ROLE_LABEL: CANDIDATE, MANAGED_BY: "gatekeeper"},
                "annotations": {RELEASE_ID: self.s.release_id},
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "Service",
                        "name": self.s.service,
                        "uid": stable_svc["metadata"]["uid"],
                    }
                ],
            },
            "spec": {
                "type": "ClusterIP",
                "selector": {**self.original_selector(), ROLE_LABEL: CANDIDATE},
                "ports": ports,
            },
        }
        existing = self.api.get(ref)
        if existing is None:
            try:
                self.api.create(ref, wanted)
                return
            except Conflict:  # created since our read (a concurrent run): make it as wanted
                existing = self.api.get(ref)
        if existing is None:
            raise StepFailed(f"{ref} was created and deleted again by another writer")
        if (existing["metadata"].get("labels") or {}).get(ROLE_LABEL) != CANDIDATE:
            raise StepFailed(f"{ref} exists and is not the gatekeeper's: rename that Service")

        def change(svc: Obj) -> Obj:
            meta = svc["metadata"]
            for key in ("labels", "annotations"):
                meta[key] = {**(meta.get(key) or {}), **wanted["metadata"][key]}
            meta["ownerReferences"] = wanted["metadata"]["ownerReferences"]
            svc["spec"]["selector"] = wanted["spec"]["selector"]
            svc["spec"]["ports"] = [_defaulted(p, svc["spec"].get("ports")) for p in ports]
            return svc

        self.api.update(ref, change)

    def delete_candidate_service(self, name: str) -> None:
        ref = Ref("Service", self.s.namespace, name)
        existing = self.api.get(ref)
        if (
            existing is not None
            and (existing["metadata"].get("labels") or {}).get(ROLE_LABEL) == CANDIDATE
        ):
            self.api.delete(ref)


def _labels(obj: Obj) -> dict[str, str]:
    found: dict[str, str] = obj["metadata"].get("labels") or {}
    return found


def _defaulted(port: Obj, current: list[Obj] | None) -> Obj:
    """``port`` with what the server filled in on the same port of ``current`` (nodePort
    never: a ClusterIP Service has none)."""
    for p in current or []:
        if p.get("port") == port.get("port") and p.get("name") == port.get("name"):
            return {**{k: v for k, v in p.items() if k != "nodePort"}, **port}
    return port


def _text(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "(nothing)"
