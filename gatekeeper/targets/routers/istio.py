"""Istio: VirtualService weights over DestinationRule subsets (any percent).

The user's Service (``target.service``) spans both versions; the DestinationRule
(``target.destination_rule``, default the app's name; created when missing) gets two subsets,
``stable`` and ``candidate``, selecting each version by its label. Before the candidate's
first pod exists, every HTTP route of the user's VirtualService (``target.virtual_service``)
that sends to the Service is turned into two destinations, the stable subset at 100 and the
candidate subset at 0; weights move between them. Restoring puts the routes and subsets back
exactly as they were (a ``stable`` subset the user had follows the version now stable), and
deletes a DestinationRule the router created.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

from gatekeeper.domain.errors import StepFailed
from gatekeeper.domain.traffic import RouterAbility, WeightRule
from gatekeeper.targets.kubernetes import marks
from gatekeeper.targets.kubernetes.api import Conflict, Ref
from gatekeeper.targets.kubernetes.services import RouterBase
from gatekeeper.targets.kubernetes.settings import MANAGED_BY, RELEASE_ID, Settings

Obj = dict[str, Any]
ABILITY = RouterAbility(router="istio", rule=WeightRule.ANY)
STABLE_SUBSET = "stable"
CANDIDATE_SUBSET = "candidate"


# -- the VirtualService, pure -------------------------------------------------------------------


def host_matches(host: str | None, s: Settings) -> bool:
    short = s.service
    return host is not None and (
        host in (short, f"{short}.{s.namespace}") or host.startswith(f"{short}.{s.namespace}.svc")
    )


def managed_routes(vs: Obj, s: Settings) -> list[int]:
    http = (vs.get("spec") or {}).get("http") or []
    return [
        i
        for i, route in enumerate(http)
        if any(
            host_matches((d.get("destination") or {}).get("host"), s)
            for d in route.get("route") or []
        )
    ]


def vs_weight(vs: Obj, s: Settings) -> int:
    for i in managed_routes(vs, s):
        dests = vs["spec"]["http"][i].get("route") or []
        stable = sum(int(d.get("weight", 0)) for d in dests if _subset(d, s) == STABLE_SUBSET)
        candidate = sum(int(d.get("weight", 0)) for d in dests if _subset(d, s) == CANDIDATE_SUBSET)
        total = stable + candidate
        return 0 if total == 0 else round(100 * candidate / total)
    return 0


def weighted_vs(vs: Obj, s: Settings, weight: int) -> Obj:
    """``vs`` with each managed route split between the two subsets, ``weight`` on the
    candidate's."""
    out = copy.deepcopy(vs)
    managed = managed_routes(vs, s)
    marks.mark(
        out,
        s.release_id,
        lambda: {"routes": {str(i): vs["spec"]["http"][i].get("route") for i in managed}},
    )
    record = marks.original(out) or {}
    for i in managed:
        http = out["spec"]["http"][i]
        original = (record.get("routes") or {}).get(str(i)) or http.get("route") or []
        base = next(
            d for d in original if host_matches((d.get("destination") or {}).get("host"), s)
        )
        others = [
            d
            for d in http.get("route") or []
            if not host_matches((d.get("destination") or {}).get("host"), s)
        ]
        http["route"] = [
            _toward(base, STABLE_SUBSET, 100 - weight),
            _toward(base, CANDIDATE_SUBSET, weight),
            *others,
        ]
    return out


def restored_vs(vs: Obj, s: Settings) -> Obj:
    out = copy.deepcopy(vs)
    record = marks.unmark(out)
    if record is None:
        return out
    for key, route in (record.get("routes") or {}).items():
        http = out["spec"]["http"]
        if int(key) < len(http):
            http[int(key)]["route"] = route
    return out


def _toward(base: Obj, subset: str, weight: int) -> Obj:
    out = copy.deepcopy(base)
    out["destination"] = {**out["destination"], "subset": subset}
    out["weight"] = weight
    return out


def _subset(d: Obj, s: Settings) -> str | None:
    dest = d.get("destination") or {}
    return dest.get("subset") if host_matches(dest.get("host"), s) else None


# -- the DestinationRule, pure ------------------------------------------------------------------


def subsets_dr(dr: Obj, s: Settings, stable_labels: dict[str, str]) -> Obj:
    """``dr`` with the two subsets: stable's pods (``stable_labels``), the candidate's."""
    out = copy.deepcopy(dr)
    spec = out.setdefault("spec", {})
    subsets = list(spec.get("subsets") or [])
    marks.mark(
        out, s.release_id, lambda: {"subsets": copy.deepcopy(dr.get("spec", {}).get("subsets"))}
    )
    for name, labels in (
        (STABLE_SUBSET, stable_labels),
        (CANDIDATE_SUBSET, {s.version_label: s.candidate_version}),
    ):
        found = next((x for x in subsets if x.get("name") == name), None)
        wanted = {**(found or {}), "name": name, "labels": dict(labels)}
        if found is None:
            subsets.append(wanted)
        else:
            subsets[subsets.index(found)] = wanted
    spec["subsets"] = subsets
    return out


def restored_dr(dr: Obj, s: Settings, version: str) -> Obj:
    out = copy.deepcopy(dr)
    record = marks.unmark(out)
    if record is None:
        return out
    subsets = copy.deepcopy(record.get("subsets"))
    if subsets is None:
        out["spec"].pop("subsets", None)
        return out
    for x in subsets:
        if x.get("name") == STABLE_SUBSET and s.version_label in (x.get("labels") or {}):
            x["labels"][s.version_label] = version
    out["spec"]["subsets"] = subsets
    return out


# -- the router --------------------------------------------------------------------------------


class IstioRouter(RouterBase):
    @property
    def ability(self) -> RouterAbility:
        return ABILITY

    @property
    def vs_ref(self) -> Ref:
        return Ref("VirtualService", self.s.namespace, self.s.virtual_service)

    @property
    def dr_ref(self) -> Ref:
        return Ref("DestinationRule", self.s.namespace, self.s.destination_rule)

    def problems(self) -> list[str]:
        problems = self.service_problems(spans_versions=True)
        vs = self.api.get(self.vs_ref)
        if vs is None:
            problems.append(
                f"{self.vs_ref} not found (target.virtual_service, default the app's name)"
            )
        elif not managed_routes(vs, self.s):
            problems.append(f"{self.vs_ref} has no HTTP route to host {self.s.service}")
        return problems

    def _vs(self) -> Obj:
        vs = self.api.get(self.vs_ref)
        if vs is None:
            raise StepFailed(f"{self.vs_ref} not found")
        return vs

    def weight(self) -> int:
        return vs_weight(self._vs(), self.s)

    def set_weight(self, weight: int) -> None:
        if not 0 <= weight <= 100:
            raise StepFailed(f"weight {weight}: a weight is 0..100")
        if weight > 0:
            self.require_ready_candidate(weight)
        if marks.original(self._vs()) is None and weight == 0:
            return  # never split: all traffic is on stable as the user routes it
        self._subsets({self.s.version_label: self.s.stable_version})
        self.api.update(self.vs_ref, lambda v: weighted_vs(v, self.s, weight))
        self.read_back(weight)

    def isolate(self) -> None:
        problems = self.problems()
        if problems:
            raise StepFailed("; ".join(problems))
        self._subsets({self.s.version_label: self.s.stable_version})
        if marks.original(self._vs()) is None:
            self.api.update(self.vs_ref, lambda v: weighted_vs(v, self.s, 0))

    def restore(self, stable_version: str) -> None:
        self.api.update(self.vs_ref, lambda v: restored_vs(v, self.s))
        self._restore_subsets(stable_version)

    def finalize(self) -> None:
        # Stable's pods run the new version: the stable subset selects them alone (the
        # candidate's carry the same version; pod-template-hash tells them apart) and takes
        # all traffic; the candidate is deleted after the drain; then the routes go back.
        self._subsets(self.promoted_labels())
        self.api.update(self.vs_ref, lambda v: weighted_vs(v, self.s, 0))
        self.workloads.retire_candidate()
        self.api.update(self.vs_ref, lambda v: restored_vs(v, self.s))
        self._restore_subsets(self.s.candidate_version)

    def _subsets(self, stable_labels: dict[str, str]) -> None:
        if self.api.get(self.dr_ref) is None:
            with contextlib.suppress(Conflict):  # created since our read: updated below
                self.api.create(
                    self.dr_ref,
                    {
                        "metadata": {
                            "name": self.s.destination_rule,
                            "namespace": self.s.namespace,
                            "labels": {MANAGED_BY: "gatekeeper"},
                            "annotations": {RELEASE_ID: self.s.release_id},
                        },
                        "spec": {"host": self.s.service},
                    },
                )
        self.api.update(self.dr_ref, lambda d: _subsets_unless_ours(d, self.s, stable_labels))

    def _restore_subsets(self, version: str) -> None:
        dr = self.api.get(self.dr_ref)
        if dr is None:
            return
        if _ours(dr):
            self.api.delete(self.dr_ref)
            return
        self.api.update(self.dr_ref, lambda d: restored_dr(d, self.s, version))


def _ours(dr: Obj) -> bool:
    return (dr["metadata"].get("labels") or {}).get(MANAGED_BY) == "gatekeeper"


def _subsets_unless_ours(dr: Obj, s: Settings, stable_labels: dict[str, str]) -> Obj:
    if not _ours(dr):
        return subsets_dr(dr, s, stable_labels)
    # Created by the router: no original to keep; it is deleted at the end.
    out = subsets_dr(dr, s, stable_labels)
    marks.unmark(out, keep_release_id=s.release_id)
    return out
