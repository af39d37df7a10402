"""KubernetesWorkloads: the user's stable Deployment and a candidate Deployment derived from it.

The object model (docs/kubernetes-target.md says why):

* the user's Deployment (``target.deployment``, default the app's name) stays the stable
  workload, under the name and manifest the user keeps in Git;
* the candidate runs as ``<deployment>-candidate``, derived from it (``derive``): the
  candidate's image, its ``version`` label, the release id; owned by stable;
* promotion is in place: stable's image and version label become the candidate's, stable
  rolls out at full size, and only then, once the router sent traffic back to stable, the
  candidate is deleted (``retire_candidate``, called by the router's ``finalize``);
* a rollback restores stable exactly (size, image, version, annotations), deletes the
  candidate and has the router restore its objects: nothing of the release is left.

Services, routes and mesh objects are the router's (``attach``): before the candidate's first
pod exists the router isolates it (``isolate``), and once its pods are gone the router puts
its objects back (``restore``).

Every method reads the objects first and writes only what differs, so a resumed release
never applies a change twice; ``state()`` is read from the API, never remembered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from gatekeeper.domain.clock import SYSTEM_CLOCK, Clock
from gatekeeper.domain.durations import human_duration
from gatekeeper.domain.errors import InvalidInput, StepFailed
from gatekeeper.domain.release import ReleaseSpec
from gatekeeper.targets.base import Health, TargetState, VersionRun

from . import derive, marks, pods
from .api import Api, Conflict, Ref
from .settings import CANDIDATE, ROLE_LABEL, Settings

Obj = dict[str, Any]

# Waiting reasons that end a readiness wait at once: the container will not start as it is.
HOPELESS = {"CrashLoopBackOff", "InvalidImageName"}
POD_CHECK_S = 2.0  # how often a readiness wait also reads the pods
GONE_WAIT_S = 60.0  # how long a rollback waits for the candidate's pods to be deleted


class TrafficObjects(Protocol):
    """What the workloads need of their router (every Kubernetes router provides it)."""

    # Whether traffic can leave the candidate's pods before they are deleted (then the
    # workloads wait target.drain for the data plane to apply it); not so when one Service
    # spans both versions.
    drains: bool

    def weight(self) -> int: ...

    def set_weight(self, weight: int) -> None: ...

    def isolate(self) -> None:
        """Before the candidate's first pod exists: stable takes all traffic, the candidate
        none, and what the router needs of the candidate (its Service) exists."""

    def restore(self, stable_version: str) -> None:
        """Once the candidate's pods are gone: the router's objects as the user wrote them
        (a version they name follows ``stable_version``); the ones it created are deleted."""

    def problems(self) -> list[str]:
        """Why the router's objects cannot carry this release (read only)."""


class KubernetesWorkloads:
    """The Workloads protocol (and, with its router attached, the Target protocol) over
    Deployments on a real API server."""

    name = "kubernetes"

    def __init__(
        self, spec: ReleaseSpec, api: Api, *, clock: Clock = SYSTEM_CLOCK, poll_s: float = 0.5
    ) -> None:
        self.spec = spec
        self.s = Settings.of(spec)
        self.api = api
        self.clock = clock
        self.poll_s = poll_s
        self.router: TrafficObjects | None = None
        self.stable_ref = Ref("Deployment", self.s.namespace, self.s.deployment)
        self.candidate_ref = Ref("Deployment", self.s.namespace, self.s.candidate)
        self._selector: dict[str, str] | None = None

    def attach(self, router: TrafficObjects) -> None:
        self.router = router

    # -- reading ----------------------------------------------------------------------------

    def stable(self) -> Obj:
        found = self.api.get(self.stable_ref)
        if found is None:
            raise StepFailed(
                f"{self.stable_ref} not found: the kubernetes target releases onto the app's "
                "existing Deployment (target.deployment, default the app's name)"
            )
        self._selector = derive.match_labels(found)
        return found

    def candidate(self) -> Obj | None:
        found = self.api.get(self.candidate_ref)
        if found is None:
            return None
        labels = found["metadata"].get("labels") or {}
        if labels.get(ROLE_LABEL) != CANDIDATE:
            raise StepFailed(
                f"{self.candidate_ref} exists and is not the gatekeeper's (no label "
                f"{ROLE_LABEL}={CANDIDATE}); the target names the candidate so: rename that "
                "Deployment"
            )
        return found

    def selector(self) -> dict[str, str]:
        """Stable's selector: it matches the pods of both versions."""
        if self._selector is None:
            self.stable()
        assert self._selector is not None
        return dict(self._selector)

    def pods(self, version: str | None = None, *, role: str | None = None) -> list[Obj]:
        """The app's pods (of ``version``; of the candidate Deployment for role candidate;
        of stable's for role stable)."""
        selector = self.selector()
        if version is not None:
            selector[self.s.version_label] = version
        if role == CANDIDATE:
            selector[ROLE_LABEL] = CANDIDATE
        found = self.api.list("Pod", self.s.namespace, selector)
        if role == "stable":
            found = [p for p in found if _labels(p).get(ROLE_LABEL) != CANDIDATE]
        return found

    def preflight(self) -> None:
        """Read-only checks before a release starts: InvalidInput naming each problem."""
        try:
            stable = self.api.get(self.stable_ref)
            problems = [] if stable is not None else [f"{self.stable_ref} not found"]
            if stable is not None:
                problems += derive.stable_problems(stable, self.s)
                problems += self._size_problems(stable)
            if self.router is not None:
                problems += self.router.problems()
        except StepFailed as e:  # a refusal (403) is an input problem before anything starts
            raise InvalidInput(f"target: {e}") from e
        if problems:
            raise InvalidInput("\n".join(f"target: {p}" for p in problems))

    def _size_problems(self, stable: Obj) -> list[str]:
        full = derive.full_size(stable)
        if self.s.replicas is not None and self.s.replicas != full:
            return [
                f"{self.stable_ref} has {full} replicas but target.replicas is "
                f"{self.s.replicas}: make them agree"
            ]
        return []

    # -- the Workloads protocol ------------------------------------------------------------

    def state(self) -> TargetState:
        stable = self.api.get(self.stable_ref)
        candidate = self.candidate()
        details: dict[str, str] = {"router": self.s.router, "namespace": self.s.namespace}
        if stable is None:
            details["stable"] = f"{self.stable_ref} not found"
            return TargetState(None, None, 0, 0, 0, False, details)
        full = derive.full_size(stable)
        details["stable"] = f"{self.stable_ref} {pods.rollout_text(stable)}"
        candidate_version = None
        candidate_ready = False
        candidate_scale = 0
        if candidate is not None:
            candidate_version = derive.version_of(candidate, self.s)
            available = int((candidate.get("status") or {}).get("availableReplicas", 0))
            candidate_ready = pods.rollout_done(candidate) and available > 0
            candidate_scale = derive.percent_of(int(candidate["spec"].get("replicas", 0)), full)
            details["candidate"] = f"{self.candidate_ref} {pods.rollout_text(candidate)}"
        weight = self.router.weight() if self.router is not None and candidate else 0
        return TargetState(
            stable_version=derive.version_of(stable, self.s),
            candidate_version=candidate_version,
            candidate_weight=weight,
            candidate_scale_percent=candidate_scale,
            stable_scale_percent=derive.percent_of(int(stable["spec"].get("replicas", 1)), full),
            candidate_ready=candidate_ready,
            details=details,
        )

    def ensure_stable(self, stable: VersionRun) -> None:
        """Stable is the user's Deployment, running ``stable.version`` (or the candidate's,
        promoted already) and ready at its size. It is never created or replaced here."""
        found = self.stable()
        problems = derive.stable_problems(found, self.s)
        if marks.original(found) is None:
            problems += self._size_problems(found)
        if problems:
            raise StepFailed("; ".join(problems))
        self.wait_rollout(self.stable_ref, "stable")

    def deploy_candidate(self, candidate: VersionRun, scale_percent: int) -> None:
        _check_percent(scale_percent, "scale_percent")
        if not candidate.image:
            raise InvalidInput(f"candidate {candidate.version}: the kubernetes target needs image")
        stable = self.stable()
        problems = derive.stable_problems(stable, self.s)
        if problems:
            raise StepFailed("; ".join(problems))
        if derive.version_of(stable, self.s) == candidate.version:
            raise InvalidInput(f"candidate {candidate.version} is the stable version already")
        current = self.candidate()
        if current is not None and derive.version_of(current, self.s) != candidate.version:
            weight = self.router.weight() if self.router is not None else 0
            if weight > 0:
                raise StepFailed(
                    f"{self.candidate_ref} runs {derive.version_of(current, self.s)} and takes "
                    f"{weight}% of traffic; roll it back before deploying {candidate.version}"
                )
        replicas = derive.replicas_for(derive.full_size(stable), scale_percent)
        wanted = derive.candidate_from(stable, self.s, replicas, candidate.version, candidate.image)
        if self.router is not None:
            self.router.isolate()  # before the candidate's first pod exists
        if current is None:
            try:
                self.api.create(self.candidate_ref, wanted)
            except Conflict:  # created since our read (a concurrent run): make it as wanted
                current = self.candidate()
        if current is not None:
            self.api.update(self.candidate_ref, lambda c: derive.candidate_as_wanted(c, wanted))
        self.wait_rollout(self.candidate_ref, "candidate")

    def scale_stable(self, percent: int) -> None:
        """Rolling: stable at ``percent`` of its full size (recorded, so a rollback restores
        it exactly)."""
        _check_percent(percent, "percent")
        full = derive.full_size(self.stable())
        self.set_replicas(stable=derive.replicas_for(full, percent))

    def set_replicas(self, *, stable: int | None = None, candidate: int | None = None) -> None:
        """Stable and the candidate at these sizes: the ones that grow first (and ready), then
        the ones that shrink, so capacity never dips."""
        current_stable = int(self.stable()["spec"].get("replicas", 1))
        found = self.candidate()
        if candidate is not None and candidate > 0 and found is None:
            raise StepFailed(f"{self.candidate_ref} is not deployed")
        current_candidate = int(found["spec"].get("replicas", 0)) if found else 0
        moves = []
        if stable is not None and stable != current_stable:
            moves.append((stable - current_stable, self.stable_ref, stable, "stable"))
        if candidate is not None and found is not None and candidate != current_candidate:
            moves.append((candidate - current_candidate, self.candidate_ref, candidate, CANDIDATE))
        for delta, ref, replicas, role in sorted(moves, key=lambda m: -m[0]):
            self.api.update(ref, self._resize(role, replicas))
            if delta > 0:
                self.wait_rollout(ref, role)

    def _resize(self, role: str, replicas: int) -> Callable[[Obj], Obj]:
        if role == "stable":
            return lambda d: derive.stable_scaled(d, self.s, replicas)

        def resized(deployment: Obj) -> Obj:
            deployment["spec"]["replicas"] = replicas
            return deployment

        return resized

    def preview_url(self) -> str:
        ready = sorted(
            (p for p in self.pods(self.s.candidate_version, role=CANDIDATE) if pods.ready(p)),
            key=pods.name,
        )
        for pod in ready:
            port = self._port(pod, ("http", "metrics"))
            if pods.ip(pod) and port:
                return f"http://{pods.ip(pod)}:{port}/"
        raise StepFailed(
            f"preview: {self.candidate_ref} has no ready pod with an address and a port "
            "(a container port named http, or its only port)"
        )

    def traffic_url(self) -> str:
        """The stable Service's in-cluster URL (users may reach the app through a Gateway)."""
        return f"http://{self.s.service}.{self.s.namespace}.svc/"

    def set_weight(self, weight: int) -> None:
        if self.router is None:
            raise StepFailed("set weight: no router is attached to the kubernetes workloads")
        self.router.set_weight(weight)

    def promote(self, scale_down_delay_s: float) -> None:
        """Stable runs the candidate's image and version at full size (a rollout in place).

        The candidate stays up: the router's ``finalize`` sends traffic back to stable and
        then retires it. The engine waits the scale-down delay before calling this (with the
        gates judging); a delay given here is waited first, with the old version still up."""
        if scale_down_delay_s < 0:
            raise InvalidInput(f"scale_down_delay must not be negative, got {scale_down_delay_s}")
        stable = self.stable()
        candidate = self.candidate()
        if derive.version_of(stable, self.s) != self.s.candidate_version:
            if candidate is None:
                raise StepFailed(f"promote: {self.candidate_ref} is not deployed")
            if not pods.rollout_done(candidate):
                raise StepFailed(
                    f"promote: {self.candidate_ref} is not ready: {pods.rollout_text(candidate)}"
                )
            if self.router is not None:
                weight = self.router.weight()
                if weight != 100:
                    raise StepFailed(
                        f"promote: the candidate takes {weight}% of traffic; stable's pods are "
                        "replaced in place, so all traffic must be on the candidate first"
                    )
            if scale_down_delay_s > 0:
                self.clock.sleep(scale_down_delay_s)
        self.api.update(self.stable_ref, lambda d: derive.stable_promoted(d, self.s))
        self.wait_rollout(self.stable_ref, "stable")

    def retire_candidate(self) -> None:
        """After promotion, with no traffic routed to it any more: once the data plane had
        ``drain`` to apply that, the candidate is deleted, and stable keeps only the release
        id of what it runs."""
        stable = self.stable()
        if derive.version_of(stable, self.s) != self.s.candidate_version:
            raise StepFailed(
                f"finalize: {self.stable_ref} runs {derive.version_of(stable, self.s)}, not "
                f"the candidate's {self.s.candidate_version}: promote it first"
            )
        self.wait_rollout(self.stable_ref, "stable")
        if self.candidate() is not None:
            self._drain()
            self.api.delete(self.candidate_ref)
            self.wait_gone()
        self.api.update(self.stable_ref, lambda d: derive.stable_settled(d, self.s))

    def _drain(self) -> None:
        if self.router is not None and self.router.drains and self.s.drain_s > 0:
            self.clock.sleep(self.s.drain_s)

    def rollback(self) -> None:
        """Stable exactly as before the release and ready at full size, traffic on it, the
        candidate deleted, the router's objects restored."""
        self.api.update(self.stable_ref, lambda d: derive.stable_restored(d, self.s))
        self.wait_rollout(self.stable_ref, "stable")
        candidate = self.candidate()
        if candidate is not None:
            if self.router is not None:
                self.router.set_weight(0)
            self._drain()
            self.api.delete(self.candidate_ref)
            self.wait_gone()
        if self.router is not None:
            version = derive.version_of(self.stable(), self.s) or self.s.stable_version
            self.router.restore(version)

    def metrics_endpoints(self, version: str | None = None) -> list[str]:
        found = set()
        for pod in self.pods(version):
            port = self._port(pod, ("metrics", "http"), self.s.metrics_port)
            if pods.ready(pod) and pods.ip(pod) and port:
                found.add(f"{pods.ip(pod)}:{port}")
        return sorted(found)

    def health(self, version: str) -> Health:
        candidate = self.candidate()
        since = (
            pods.parse_time(candidate["metadata"].get("creationTimestamp")) if candidate else None
        )
        found = pods.problems(
            self.pods(version),
            since=since,
            now=self.clock.now(),
            grace_s=self.s.not_ready_grace_s,
            max_restarts=self.s.max_restarts,
        )
        return Health(tuple(found))

    def close(self) -> None:
        self.api.close()

    def shutdown(self) -> None:
        """Nothing runs locally: the cluster's objects outlive the controller."""
        self.close()

    # -- waiting ----------------------------------------------------------------------------

    def wait_rollout(self, ref: Ref, role: str) -> Obj:
        """Until ``ref``'s rollout is done; StepFailed at the progress deadline (or as soon as
        a pod crash-loops), naming each pod not ready and why."""
        start = self.clock.now()
        limit = self.s.progress_deadline_s
        checked: float | None = None
        while True:
            found = self.api.get(ref)
            if found is None:
                raise StepFailed(f"{ref} is gone while waiting for its rollout")
            if pods.rollout_done(found):
                return found
            waited = (self.clock.now() - start).total_seconds()
            given_up = pods.deadline_exceeded(found)
            hopeless: list[str] = []
            if checked is None or waited - checked >= POD_CHECK_S:
                checked = waited
                hopeless = [pods.describe(p) for p in self._rollout_pods(role) if _hopeless(p)]
            if hopeless or given_up or waited >= limit:
                why = (
                    "a pod cannot start"
                    if hopeless
                    else f"the controller gave up ({given_up})"
                    if given_up
                    else f"progress_deadline {human_duration(limit)}"
                )
                raise StepFailed(self._not_ready(ref, role, found, waited, why))
            self.clock.sleep(self.poll_s)

    def _not_ready(self, ref: Ref, role: str, found: Obj, waited: float, why: str) -> str:
        not_ready = [p for p in self._rollout_pods(role) if not pods.ready(p)]
        described = "; ".join(pods.describe(p) for p in sorted(not_ready, key=pods.name))
        conditions = [
            f"{c.get('type')}={c.get('status')} ({c.get('reason')}: {c.get('message')})"
            for c in (found.get("status") or {}).get("conditions") or []
            if c.get("status") != "True" or c.get("type") == "ReplicaFailure"
        ]
        return (
            f"{ref} not ready after {human_duration(waited)} ({why}): "
            f"{pods.rollout_text(found)}; "
            + (described or "no pod of it is waiting")
            + (f"; {'; '.join(conditions)}" if conditions else "")
        )

    def _rollout_pods(self, role: str) -> list[Obj]:
        return [p for p in self.pods(role=role) if not pods.terminating(p)]

    def wait_gone(self) -> bool:
        """Until the candidate's pods are deleted (bounded: a terminating pod is out of every
        Service's ready endpoints already)."""
        start = self.clock.now()
        while self.pods(role=CANDIDATE):
            if (self.clock.now() - start).total_seconds() >= GONE_WAIT_S:
                return False
            self.clock.sleep(self.poll_s)
        return True

    def _port(self, pod: Obj, names: tuple[str, ...], fixed: int | None = None) -> int | None:
        if fixed is not None:
            return fixed
        container = derive.app_container({"spec": {"template": {"spec": pod["spec"]}}}, self.s)
        return pods.port(container, names) if container else None


def _labels(obj: Obj) -> dict[str, str]:
    found: dict[str, str] = obj["metadata"].get("labels") or {}
    return found


def _hopeless(pod: Obj) -> bool:
    return any(
        ((cs.get("state") or {}).get("waiting") or {}).get("reason") in HOPELESS
        for cs in pods.container_statuses(pod)
    )


def _check_percent(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise InvalidInput(f"{what} must be an integer from 0 to 100, got {value!r}")
