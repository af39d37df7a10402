"""What a kubelet reads from a pod spec: env, `$(VAR)` expansion, argv, probes, back-off."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tests.e2e.testbed.images import Image

Pod = dict[str, Any]
Container = dict[str, Any]

# The host environment a bed process keeps; everything else comes from the container's env.
HOST_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV")
# A container whose command is one of these runs the repository's own interpreter: the bed's
# "image" is the repository and its .venv.
PYTHON_COMMANDS = {"python", "python3"}

# Kubelet: 10 s doubling to 300 s, reset after 10 min of running. The bed scales it by 1/10.
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 30.0
BACKOFF_RESET_AFTER_S = 60.0
# Graceful termination: the pod's terminationGracePeriodSeconds, capped so a test never waits.
GRACE_CAP_S = 3.0


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: known names are replaced, `$$` escapes, others stay."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2 : end]
                    out.append(env[name] if name in env else text[i : end + 1])
                    i = end + 1
                    continue
        out.append(ch)
        i += 1
    return "".join(out)


_LABEL_REF = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")


def field_value(pod: Pod, field_path: str, pod_ip: str, host_ip: str) -> str:
    """A `fieldRef` as the kubelet resolves it; an unsupported path is an error."""
    meta, spec = pod["metadata"], pod["spec"]
    simple = {
        "metadata.name": meta["name"],
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    if field_path in simple:
        return str(simple[field_path])
    match = _LABEL_REF.match(field_path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise ValueError(f"fieldRef {field_path!r} is not supported by the test bed's kubelet")


Lookup = Callable[[str, str], dict[str, str] | None]
"""(kind 'configmap' or 'secret', name) -> its data (secrets decoded), None when absent."""


def container_env(
    pod: Pod,
    container: Container,
    pod_ip: str,
    host_ip: str,
    lookup: Lookup,
    image_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The process environment: a few host variables, the image's env, then envFrom and env,
    in order."""
    env = {k: os.environ[k] for k in HOST_ENV if k in os.environ}
    env.update(image_env or {})
    env["HOSTNAME"] = pod["metadata"]["name"]
    env["TESTBED_IMAGE"] = str(container.get("image", ""))
    declared: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, key in (("configmap", "configMapRef"), ("secret", "secretRef")):
            ref = source.get(key)
            if ref:
                data = lookup(kind, ref["name"])
                if data is None and not ref.get("optional"):
                    raise ValueError(f"envFrom: {kind} {ref['name']} not found")
                for name, value in (data or {}).items():
                    declared[prefix + name] = value
    for item in container.get("env") or []:
        name = item["name"]
        if "value" in item:
            declared[name] = expand(str(item["value"]), declared)
            continue
        source = item.get("valueFrom") or {}
        if "fieldRef" in source:
            declared[name] = field_value(pod, source["fieldRef"]["fieldPath"], pod_ip, host_ip)
        elif "configMapKeyRef" in source or "secretKeyRef" in source:
            kind = "configmap" if "configMapKeyRef" in source else "secret"
            ref = source.get("configMapKeyRef") or source["secretKeyRef"]
            found = (lookup(kind, ref["name"]) or {}).get(ref["key"])
            if found is None and not ref.get("optional"):
                raise ValueError(f"env {name}: {kind} {ref['name']} has no key {ref['key']!r}")
            declared[name] = found or ""
        elif "resourceFieldRef" in source:
            declared[name] = "0"
        else:
            declared[name] = ""
    env.update(declared)
    return env


def container_argv(
    container: Container, env: Mapping[str, str], image: Image | None = None
) -> list[str]:
    """command + args with `$(VAR)` expanded; without a command, the image's entrypoint and
    the container's args (else the image's cmd); `python`/`python3` become this interpreter."""
    # An empty args list is no args (the API server drops it), so the image's cmd applies.
    args = container.get("args")
    expanded_args = [expand(str(a), env) for a in args] if args else None
    if container.get("command") or image is None:
        argv = [expand(str(a), env) for a in (container.get("command") or [])]
        argv += expanded_args or []
    else:
        argv = image.argv(expanded_args)
    if not argv:
        raise ValueError(
            f"container {container['name']} has no command and its image "
            f"{container.get('image', '')!r} is not in the bed's registry (testbed/images.py)"
        )
    if argv[0] in PYTHON_COMMANDS:
        argv[0] = sys.executable
    return argv


@dataclass(frozen=True)
class HttpProbe:
    """A readinessProbe with an httpGet handler, its port resolved to a number."""

    path: str
    port: int
    host: str
    scheme: str
    headers: tuple[tuple[str, str], ...]
    initial_delay_s: float
    period_s: float
    timeout_s: float
    success_threshold: int
    failure_threshold: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme.lower()}://{host}:{self.port}{self.path}"


def resolve_port(container: Container, port: int | str) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"container {container['name']} has no port named {port!r}")


def readiness_probe(container: Container, pod_ip: str) -> HttpProbe | None:
    """The container's readinessProbe, or None (then a running container is ready)."""
    probe = container.get("readinessProbe")
    if not probe:
        return None
    http = probe.get("httpGet")
    if http is None:
        raise ValueError(
            f"container {container['name']}: only httpGet readiness probes are supported"
        )
    return HttpProbe(
        path=http.get("path") or "/",
        port=resolve_port(container, http["port"]),
        host=http.get("host") or pod_ip,
        scheme=http.get("scheme") or "HTTP",
        headers=tuple((h["name"], h["value"]) for h in http.get("httpHeaders") or []),
        initial_delay_s=float(probe.get("initialDelaySeconds") or 0),
        period_s=float(probe.get("periodSeconds") or 10),
        timeout_s=float(probe.get("timeoutSeconds") or 1),
        success_threshold=int(probe.get("successThreshold") or 1),
        failure_threshold=int(probe.get("failureThreshold") or 3),
    )


def restart_delay(restarts_so_far: int) -> float:
    """The wait before the next start: the first restart is at once, then base, 2x base..."""
    if restarts_so_far <= 0:
        return 0.0
    return float(min(BACKOFF_BASE_S * 2 ** (restarts_so_far - 1), BACKOFF_CAP_S))


def should_restart(policy: str, exit_code: int) -> bool:
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    return False


def grace_seconds(pod: Pod) -> float:
    meta_grace = pod["metadata"].get("deletionGracePeriodSeconds")
    grace = (
        meta_grace if meta_grace is not None else pod["spec"].get("terminationGracePeriodSeconds")
    )
    return min(float(30 if grace is None else grace), GRACE_CAP_S)
