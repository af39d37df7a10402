"""Pods and rollouts as a kubelet and the Deployment controller report them: readiness, what
keeps a pod from it, and the P0 signals (crash loops, restarts, pods not ready too long).
Pure functions over objects as the API server returns them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gatekeeper.domain.durations import human_duration

Obj = dict[str, Any]

# Waiting reasons a kubelet gives a container that will not run as it is: each is a P0 signal.
STUCK = {
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
}


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def name(pod: Obj) -> str:
    return str(pod["metadata"]["name"])


def terminating(pod: Obj) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def condition(pod: Obj, kind: str) -> Obj | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return dict(c)
    return None


def ready(pod: Obj) -> bool:
    c = condition(pod, "Ready")
    return c is not None and c.get("status") == "True" and not terminating(pod)


def ip(pod: Obj) -> str | None:
    found = (pod.get("status") or {}).get("podIP")
    return str(found) if found else None


def container_statuses(pod: Obj) -> list[Obj]:
    found: list[Obj] = (pod.get("status") or {}).get("containerStatuses") or []
    return found


def describe(pod: Obj) -> str:
    """One pod and what keeps it from Ready: phase, false conditions, stuck containers."""
    status = pod.get("status") or {}
    parts = [str(status.get("phase") or "Unknown")]
    for c in status.get("conditions") or []:
        if c.get("status") != "True":
            why = c.get("reason") or ""
            if c.get("message"):
                why = f"{why}: {c['message']}" if why else str(c["message"])
            parts.append(f"{c.get('type')}={c.get('status')}" + (f" ({why})" if why else ""))
    for cs in container_statuses(pod):
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            parts.append(
                f"container {cs.get('name')} {waiting['reason']}, restarts "
                f"{cs.get('restartCount', 0)}"
            )
    if terminating(pod):
        parts.append("terminating")
    return f"pod {name(pod)}: " + ", ".join(parts)


# -- rollouts -------------------------------------------------------------------------------


def rollout_done(deployment: Obj) -> bool:
    """As `kubectl rollout status` judges it: the controller saw the latest spec, and every
    wanted replica is updated and available with none of the old ones left."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    wanted = int(spec.get("replicas", 1))
    if int(status.get("observedGeneration", 0)) < int(deployment["metadata"].get("generation", 0)):
        return False
    return (
        int(status.get("updatedReplicas", 0)) >= wanted
        and int(status.get("replicas", 0)) <= wanted
        and int(status.get("availableReplicas", 0)) >= wanted
    )


def rollout_text(deployment: Obj) -> str:
    status = deployment.get("status") or {}
    wanted = int((deployment.get("spec") or {}).get("replicas", 1))
    return (
        f"{int(status.get('availableReplicas', 0))} of {wanted} available, "
        f"{int(status.get('updatedReplicas', 0))} updated"
    )


def deadline_exceeded(deployment: Obj) -> str | None:
    """The controller's own verdict, when it gave up (its progressDeadlineSeconds)."""
    for c in (deployment.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded":
            return str(c.get("message") or "ProgressDeadlineExceeded")
    return None


# -- P0 signals ---------------------------------------------------------------------------------


def problems(
    pods: list[Obj],
    *,
    since: datetime | None,
    now: datetime,
    grace_s: float,
    max_restarts: int,
) -> list[str]:
    """What is wrong with these pods now, each naming the pod and the value.

    Restarts count from ``since`` (the candidate's deploy): a pod created later counts all its
    restarts; an older one counts one when its last termination came after ``since`` (its
    restart count includes restarts from before the release)."""
    found = []
    for pod in sorted(pods, key=name):
        if terminating(pod):
            continue
        created = parse_time(pod["metadata"].get("creationTimestamp"))
        restarts = 0
        stuck = False
        for cs in container_statuses(pod):
            count = int(cs.get("restartCount", 0))
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in STUCK:
                stuck = True
                found.append(
                    f"pod {name(pod)}: container {cs.get('name')} {waiting['reason']}, "
                    f"restarts {count}" + _last_exit(cs)
                )
            if since is None:
                continue
            if created is not None and created >= since:
                restarts += count
            else:
                finished = parse_time(
                    ((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
                )
                restarts += 1 if finished is not None and finished >= since else 0
        if restarts > max_restarts:
            found.append(
                f"pod {name(pod)}: {restarts} restart{'s' if restarts != 1 else ''} since the "
                f"candidate was deployed (max_restarts {max_restarts})"
            )
        if (pod.get("status") or {}).get("phase") == "Failed":
            found.append(f"pod {name(pod)}: Failed ({(pod.get('status') or {}).get('reason')})")
        elif not ready(pod) and not stuck:  # a stuck container says why already
            cond = condition(pod, "Ready")
            start = parse_time(cond.get("lastTransitionTime") if cond else None) or created
            waited = (now - start).total_seconds() if start is not None else 0.0
            if waited > grace_s:
                found.append(
                    f"{describe(pod)}; not ready for {human_duration(waited)} "
                    f"(not_ready_grace {human_duration(grace_s)})"
                )
    return found


def _last_exit(cs: Obj) -> str:
    last = (cs.get("lastState") or {}).get("terminated")
    if not last:
        return ""
    return f", last exit code {last.get('exitCode')}" + (
        f" ({last['reason']})" if last.get("reason") else ""
    )


# -- ports ----------------------------------------------------------------------------------


def port(container: Obj, names: tuple[str, ...]) -> int | None:
    """The container port named first in ``names``; else its only port."""
    ports = container.get("ports") or []
    for wanted in names:
        for p in ports:
            if p.get("name") == wanted:
                return int(p["containerPort"])
    if len(ports) == 1:
        return int(ports[0]["containerPort"])
    return None
