"""Gateway API: weights on the user's HTTPRoute (any percent).

The user names the HTTPRoute (``target.route``, default the app's name). In every rule with a
backendRef to the stable Service the router manages two refs: the stable Service's and, beside
it, the candidate Service's (``<service>-candidate``, created by the router before the
candidate's first pod exists); their weights are ``100 - w`` and ``w``. Weight 0 takes the
candidate's ref out again and gives the stable ref its own weight back. Everything else in the
route (other rules, other refs, filters, hostnames, parents) is left as it is, and a concurrent
edit survives: each write re-reads the route (a 409 reads again).

While a candidate runs the stable Service is pinned to stable's version (its selector would
match the candidate's pods too). ``finalize`` after promotion: the stable Service pinned to
stable's new pods, all weight back on it, the candidate deleted after the drain, then the
Service's own selector and no candidate Service.
"""

from __future__ import annotations

import copy
from typing import Any

from gatekeeper.domain.errors import StepFailed
from gatekeeper.domain.traffic import RouterAbility, WeightRule
from gatekeeper.targets.kubernetes import marks
from gatekeeper.targets.kubernetes.api import Ref
from gatekeeper.targets.kubernetes.services import RouterBase
from gatekeeper.targets.kubernetes.settings import Settings

Obj = dict[str, Any]
ABILITY = RouterAbility(router="gateway-api", rule=WeightRule.ANY)


# -- the route, pure --------------------------------------------------------------------------


def refers(ref: Obj, service: str, namespace: str) -> bool:
    """Whether a backendRef points at Service ``service`` in ``namespace``."""
    return (
        (ref.get("group") or "") == ""
        and (ref.get("kind") or "Service") == "Service"
        and ref.get("name") == service
        and (ref.get("namespace") or namespace) == namespace
    )


def managed_rules(route: Obj, s: Settings) -> list[int]:
    rules = (route.get("spec") or {}).get("rules") or []
    return [
        i
        for i, rule in enumerate(rules)
        if any(refers(r, s.service, s.namespace) for r in rule.get("backendRefs") or [])
    ]


def route_weight(route: Obj, s: Settings) -> int:
    """The candidate's share in the first managed rule, in percent (0 without its ref)."""
    for i in managed_rules(route, s):
        refs = route["spec"]["rules"][i].get("backendRefs") or []
        stable = sum(_w(r) for r in refs if refers(r, s.service, s.namespace))
        candidate = sum(_w(r) for r in refs if refers(r, s.candidate_service, s.namespace))
        if not any(refers(r, s.candidate_service, s.namespace) for r in refs):
            return 0
        total = stable + candidate
        return 0 if total == 0 else round(100 * candidate / total)
    return 0


def weighted_route(route: Obj, s: Settings, weight: int) -> Obj:
    """``route`` with ``weight`` percent on the candidate's ref in every managed rule."""
    if weight == 0:
        return restored_route(route, s)
    out = copy.deepcopy(route)
    managed = managed_rules(route, s)
    marks.mark(out, s.release_id, lambda: _record(route, s, managed))
    for i in managed:
        rule = out["spec"]["rules"][i]
        refs = []
        for ref in rule.get("backendRefs") or []:
            if refers(ref, s.candidate_service, s.namespace):
                continue
            if refers(ref, s.service, s.namespace):
                refs.append({**ref, "weight": 100 - weight})
                refs.append({**copy.deepcopy(ref), "name": s.candidate_service, "weight": weight})
            else:
                refs.append(ref)
        rule["backendRefs"] = refs
    return out


def restored_route(route: Obj, s: Settings) -> Obj:
    """``route`` without the candidate's refs, each stable ref with its own weight again."""
    out = copy.deepcopy(route)
    record = marks.unmark(out)
    if record is None:
        return out
    weights: dict[str, Any] = record.get("weights") or {}
    for i in managed_rules(out, s):
        rule = out["spec"]["rules"][i]
        refs = []
        for ref in rule.get("backendRefs") or []:
            if refers(ref, s.candidate_service, s.namespace):
                continue
            if refers(ref, s.service, s.namespace):
                ref = {k: v for k, v in ref.items() if k != "weight"}
                if weights.get(str(i)) is not None:
                    ref["weight"] = weights[str(i)]
            refs.append(ref)
        rule["backendRefs"] = refs
    return out


def _record(route: Obj, s: Settings, managed: list[int]) -> dict[str, Any]:
    """The stable ref's own weight in each managed rule (None: it had none, which means 1)."""
    weights: dict[str, Any] = {}
    for i in managed:
        refs = route["spec"]["rules"][i].get("backendRefs") or []
        stable = next(r for r in refs if refers(r, s.service, s.namespace))
        weights[str(i)] = stable.get("weight")
    return {"weights": weights}


def _w(ref: Obj) -> int:
    return int(ref.get("weight", 1))


def accepted(route: Obj) -> bool:
    """Every parent that reports on the route saw its current generation and resolved its refs
    (no parent reporting, as on a cluster without a Gateway controller: nothing to wait for)."""
    generation = route["metadata"].get("generation")
    for parent in (route.get("status") or {}).get("parents") or []:
        for c in parent.get("conditions") or []:
            if c.get("type") in ("Accepted", "ResolvedRefs"):
                if c.get("observedGeneration") != generation or c.get("status") != "True":
                    return False
    return True


# -- the router --------------------------------------------------------------------------------


class GatewayApiRouter(RouterBase):
    @property
    def ability(self) -> RouterAbility:
        return ABILITY

    @property
    def route_ref(self) -> Ref:
        return Ref("HTTPRoute", self.s.namespace, self.s.route)

    def problems(self) -> list[str]:
        problems = self.service_problems()
        route = self.api.get(self.route_ref)
        if route is None:
            problems.append(f"{self.route_ref} not found (target.route, default the app's name)")
        elif not managed_rules(route, self.s):
            problems.append(
                f"{self.route_ref} has no rule with a backendRef to Service {self.s.service}"
            )
        return problems

    def _route(self) -> Obj:
        route = self.api.get(self.route_ref)
        if route is None:
            raise StepFailed(f"{self.route_ref} not found")
        return route

    def weight(self) -> int:
        return route_weight(self._route(), self.s)

    def set_weight(self, weight: int) -> None:
        if not 0 <= weight <= 100:
            raise StepFailed(f"weight {weight}: a weight is 0..100")
        if weight > 0:
            self.require_ready_candidate(weight)
        if not managed_rules(self._route(), self.s):
            raise StepFailed(
                f"{self.route_ref} has no rule with a backendRef to Service {self.s.service}"
            )
        self.api.update(self.route_ref, lambda r: weighted_route(r, self.s, weight))
        self.read_back(weight)

    def verify_weight(self, weight: int) -> bool:
        route = self._route()
        return route_weight(route, self.s) == weight and accepted(route)

    def isolate(self) -> None:
        problems = self.problems()
        if problems:
            raise StepFailed("; ".join(problems))
        self.pin(self.s.stable_version)
        self.ensure_candidate_service(self.s.candidate_service)

    def restore(self, stable_version: str) -> None:
        self.api.update(self.route_ref, lambda r: restored_route(r, self.s))
        self.unpin(stable_version)
        self.delete_candidate_service(self.s.candidate_service)

    def finalize(self) -> None:
        # Stable's pods run the new version now. The stable Service selects them alone (the
        # candidate's carry the same version), the route goes back to it, and the candidate's
        # pods, routed to no more, are deleted once the data plane had time to apply that;
        # only then the Service's own selector comes back.
        self.pin_promoted()
        # Pinned to the old version until now, the stable Service had no endpoint left: the
        # route goes back to it once the data plane has its new ones, else users get 503s.
        if route_weight(self._route(), self.s) != 0:
            self.settle()
        self.api.update(self.route_ref, lambda r: restored_route(r, self.s))
        self.workloads.retire_candidate()
        self.unpin(self.s.candidate_version)
        self.delete_candidate_service(self.s.candidate_service)
