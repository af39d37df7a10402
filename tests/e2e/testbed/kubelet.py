"""Runs the bed's app pods as local processes, in place of a kubelet.

Pods labelled `testbed.gatekeeper.dev/run: process` are left alone by kwok's Stages. Once such
a pod is scheduled, the kubelet gives it an address of its own (see podnet.py), starts each
container's command and args (`$(VAR)` expanded) with the container's env in a process group
(a container without a command runs its image's entrypoint from the bed's registry, see
images.py; an image not there waits in ErrImagePull/ImagePullBackOff), and keeps the pod's
status as a kubelet would:

- phase Running, podIP/podIPs, hostIP, startTime;
- readinessProbe (httpGet, on the pod address) every periodSeconds, honouring
  initialDelaySeconds, timeoutSeconds, successThreshold and failureThreshold, sets
  containerStatuses[].ready and the ContainersReady and Ready conditions; without a probe a
  running container is ready;
- a container that exits is restarted per restartPolicy: the first restart at once, then after
  1 s, 2 s, 4 s... capped at 30 s (the kubelet's 10 s...300 s scaled by 1/10), the back-off
  reset after 60 s of running; meanwhile its state is waiting/CrashLoopBackOff, its lastState
  the terminated exit code, and restartCount counts the restarts;
- a pod with a deletionTimestamp gets SIGTERM to each process group, SIGKILL after its grace
  period (capped at 3 s), and is then deleted with gracePeriodSeconds=0.

Pods are followed with one watch on the API server; each pod is served by one thread that
sleeps until its next probe, restart or process exit.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx

from tests.e2e.testbed import podspec
from tests.e2e.testbed.images import Image, ImageRegistry, default_registry
from tests.e2e.testbed.kubeapi import ApiError, KubeApi
from tests.e2e.testbed.podnet import PodNetwork

APP_LABEL = "testbed.gatekeeper.dev/run"
APP_LABEL_VALUE = "process"
SELECTOR = f"{APP_LABEL}={APP_LABEL_VALUE}"
HOST_IP = "127.0.0.1"
SMP = "application/strategic-merge-patch+json"
PULL_RETRY_S = 1.0  # how often an image missing from the bed's registry is looked up again

Pod = dict[str, Any]


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pod_name(pod: Pod) -> str:
    return f"{pod['metadata'].get('namespace', '')}/{pod['metadata']['name']}"


@dataclass
class ContainerRun:
    """One container of a pod: its process, restarts and readiness."""

    spec: dict[str, Any]
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    probe: podspec.HttpProbe | None
    proc: subprocess.Popen[bytes] | None = None
    started_at: str = ""
    started_mono: float = 0.0
    ever_started: bool = False
    restart_count: int = 0
    backoff_level: int = 0
    next_start: float | None = 0.0
    waiting: dict[str, str] | None = None
    last_terminated: dict[str, Any] | None = None
    final: dict[str, Any] | None = None
    ready: bool = False
    probe_next: float = 0.0
    probe_ok: int = 0
    probe_fail: int = 0
    pull_next: float | None = None  # an image not in the registry: when to look again

    @property
    def name(self) -> str:
        return str(self.spec["name"])


@dataclass
class _Transitions:
    times: dict[str, tuple[str, str]] = field(default_factory=dict)

    def condition(
        self, kind: str, status: bool, reason: str = "", message: str = ""
    ) -> dict[str, str]:
        flag = "True" if status else "False"
        previous = self.times.get(kind)
        if previous is None or previous[0] != flag:
            self.times[kind] = (flag, _now())
        cond = {"type": kind, "status": flag, "lastTransitionTime": self.times[kind][1]}
        if reason:
            cond["reason"] = reason
        if message:
            cond["message"] = message
        return cond


class PodWorker(threading.Thread):
    """Serves one pod from its first scheduled sight to its deletion."""

    def __init__(self, kubelet: Kubelet, pod: Pod) -> None:
        super().__init__(name=f"pod {_pod_name(pod)}", daemon=True)
        self.kubelet = kubelet
        self.pod = pod
        self.uid: str = pod["metadata"]["uid"]
        self.pod_name = _pod_name(pod)
        self._wake = threading.Event()
        self._deleting = bool(pod["metadata"].get("deletionTimestamp"))
        self._gone = False
        self._containers: list[ContainerRun] = []
        self._ip = ""
        self._start_time = _now()
        self._conditions = _Transitions()
        self._config_error = ""
        self._last_status: dict[str, Any] | None = None

    # Called by the kubelet's watch thread.
    def update(self, pod: Pod) -> None:
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            self._deleting = True
        published = self._last_status
        if published is not None and _summary(pod.get("status") or {}) != _summary(published):
            # Someone else wrote the status (the node lifecycle controller marks pods not
            # Ready when it thinks a node silent): as a kubelet does, write ours again.
            self._last_status = None
        self._wake.set()

    def gone(self) -> None:
        self._gone = True
        self._wake.set()

    def run(self) -> None:
        try:
            self._serve()
        except Exception as exc:  # noqa: BLE001 - a pod the bed cannot serve is logged, not fatal
            self.kubelet.log(f"{self.pod_name}: worker error: {exc!r}")
        finally:
            self._kill_all(grace=0.0)
            if self._ip:
                self.kubelet.network.release(self._ip)

    def _serve(self) -> None:
        if self._deleting:
            self._delete_pod()
            return
        phase = (self.pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            return
        ports = [
            int(p["containerPort"])
            for c in self.pod["spec"]["containers"]
            for p in c.get("ports") or []
            if p.get("protocol", "TCP") == "TCP"
        ]
        self._ip = self.kubelet.network.allocate(ports)
        self._prepare()
        while not self.kubelet.stopping:
            if self._gone:
                return
            if self._deleting:
                self._terminate()
                return
            now = time.monotonic()
            for c in self._containers:
                self._step(c, now)
            self._publish()
            self._wake.wait(self._next_wake(time.monotonic()))
            self._wake.clear()

    def _prepare(self) -> None:
        meta = self.pod["metadata"]
        work = self.kubelet.work_dir / meta.get("namespace", "") / meta["name"]
        work.mkdir(parents=True, exist_ok=True)
        for spec in self.pod["spec"]["containers"]:
            c = ContainerRun(spec, [], {}, work / f"{spec['name']}.log", None)
            self._containers.append(c)
            self._resolve(c, time.monotonic())
        if self._config_error:
            for c in self._containers:
                c.next_start = None
                c.waiting = {"reason": "CreateContainerConfigError", "message": self._config_error}

    def _resolve(self, c: ContainerRun, now: float) -> None:
        """The container's env, argv and probe; without a command, from its image in the
        bed's registry (one not there yet: ErrImagePull, then ImagePullBackOff, looked up
        again every PULL_RETRY_S)."""
        spec = c.spec
        image: Image | None = None
        if not spec.get("command"):
            image = self.kubelet.images.lookup(str(spec.get("image", "")))
            if image is None:
                reason = "ImagePullBackOff" if c.pull_next is not None else "ErrImagePull"
                c.waiting = {
                    "reason": reason,
                    "message": f'failed to pull image "{spec.get("image", "")}": not found in '
                    "the bed's image registry (tests/e2e/testbed/images.py)",
                }
                c.next_start = None
                c.pull_next = now + PULL_RETRY_S
                return
        c.pull_next = None
        try:
            c.env = podspec.container_env(
                self.pod, spec, self._ip, HOST_IP, self._lookup, image.env if image else None
            )
            c.argv = podspec.container_argv(spec, c.env, image)
            c.probe = podspec.readiness_probe(spec, self._ip)
        except (ValueError, KeyError, ApiError) as exc:
            self._config_error = f"{spec['name']}: {exc}"
            self.kubelet.log(f"{self.pod_name}: cannot run: {self._config_error}")
            c.env, c.argv, c.probe = {}, [], None
            c.next_start = None
            c.waiting = {"reason": "CreateContainerConfigError", "message": self._config_error}
            return
        c.waiting = None
        c.next_start = now

    def _lookup(self, kind: str, name: str) -> dict[str, str] | None:
        return self.kubelet.read_data(self.pod["metadata"]["namespace"], kind, name)

    def _step(self, c: ContainerRun, now: float) -> None:
        if c.pull_next is not None and now >= c.pull_next:
            self._resolve(c, now)
        if c.proc is not None and c.proc.poll() is not None:
            self._exited(c, now)
        if c.proc is None and c.next_start is not None and now >= c.next_start:
            self._start(c, now)
        if c.proc is not None and c.probe is not None and now >= c.probe_next:
            self._probe(c, c.probe)
            c.probe_next = time.monotonic() + c.probe.period_s

    def _start(self, c: ContainerRun, now: float) -> None:
        if c.ever_started:
            c.restart_count += 1
        c.ever_started = True
        c.waiting = None
        c.next_start = None
        c.ready = c.probe is None
        c.probe_ok = c.probe_fail = 0
        c.probe_next = now + (c.probe.initial_delay_s if c.probe else 0.0)
        c.started_at = _now()
        c.started_mono = now
        with c.log_path.open("ab") as log:
            try:
                c.proc = subprocess.Popen(
                    c.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=c.env,
                    cwd=c.log_path.parent,
                    start_new_session=True,
                )
            except OSError as exc:
                c.proc = None
                self.kubelet.log(f"{self.pod_name}/{c.name}: cannot start {c.argv!r}: {exc}")
                self._record_exit(c, 127 if isinstance(exc, FileNotFoundError) else 126, now)
                return
        self.kubelet.log(f"{self.pod_name}/{c.name}: started pid {c.proc.pid}: {c.argv!r}")
        proc = c.proc
        threading.Thread(target=self._reap, args=(proc,), daemon=True).start()

    def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        proc.wait()
        self._wake.set()

    def _exited(self, c: ContainerRun, now: float) -> None:
        assert c.proc is not None
        code = c.proc.returncode
        c.proc = None
        self._record_exit(c, 128 - code if code < 0 else code, now)

    def _record_exit(self, c: ContainerRun, code: int, now: float) -> None:
        c.ready = False
        c.last_terminated = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": c.started_at,
            "finishedAt": _now(),
            "containerID": "",
        }
        self.kubelet.log(f"{self.pod_name}/{c.name}: exited with {code}")
        if now - c.started_mono >= podspec.BACKOFF_RESET_AFTER_S:
            c.backoff_level = 0
        policy = self.pod["spec"].get("restartPolicy", "Always")
        if not podspec.should_restart(policy, code):
            c.final = c.last_terminated
            c.next_start = None
            return
        delay = podspec.restart_delay(c.backoff_level)
        c.backoff_level += 1
        c.next_start = now + delay
        if delay > 0:
            meta = self.pod["metadata"]
            c.waiting = {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {delay:g}s restarting failed container={c.name} "
                f"pod={meta['name']}_{meta.get('namespace', '')}({self.uid})",
            }

    def _probe(self, c: ContainerRun, probe: podspec.HttpProbe) -> None:
        try:
            response = self.kubelet.http.get(
                probe.url,
                headers={"Connection": "close", **dict(probe.headers)},
                timeout=probe.timeout_s,
            )
            ok = 200 <= response.status_code < 400
        except httpx.HTTPError:
            ok = False
        if ok:
            c.probe_ok, c.probe_fail = c.probe_ok + 1, 0
            if c.probe_ok >= probe.success_threshold:
                c.ready = True
        else:
            c.probe_ok, c.probe_fail = 0, c.probe_fail + 1
            if c.probe_fail >= probe.failure_threshold:
                c.ready = False

    def _next_wake(self, now: float) -> float:
        due = [now + 5.0]
        for c in self._containers:
            if c.proc is None and c.next_start is not None:
                due.append(c.next_start)
            if c.pull_next is not None:
                due.append(c.pull_next)
            if c.proc is not None and c.probe is not None:
                due.append(c.probe_next)
        return max(0.01, min(due) - now)

    def _container_status(self, c: ContainerRun) -> dict[str, Any]:
        state: dict[str, Any]
        if c.proc is not None:
            state = {"running": {"startedAt": c.started_at}}
        elif c.final is not None:
            state = {"terminated": c.final}
        else:
            state = {"waiting": c.waiting or {"reason": "ContainerCreating"}}
        status: dict[str, Any] = {
            "name": c.name,
            "image": c.spec.get("image", ""),
            "imageID": "",
            "containerID": f"testbed://{c.proc.pid}" if c.proc is not None else "",
            "ready": c.ready,
            "started": c.proc is not None,
            "restartCount": c.restart_count,
            "state": state,
            "lastState": {"terminated": c.last_terminated}
            if c.last_terminated and c.final is None
            else {},
        }
        return status

    def _status(self) -> dict[str, Any]:
        statuses = [self._container_status(c) for c in self._containers]
        unready = [c.name for c in self._containers if not c.ready]
        finals = [c.final for c in self._containers]
        if self._containers and all(f is not None for f in finals):
            ok = all(f is not None and f["exitCode"] == 0 for f in finals)
            phase = "Succeeded" if ok else "Failed"
        elif any(c.ever_started for c in self._containers):
            phase = "Running"
        else:
            phase = "Pending"
        message = f"containers with unready status: [{' '.join(unready)}]" if unready else ""
        reason = "ContainersNotReady" if unready else ""
        if phase in ("Succeeded", "Failed"):
            reason = "PodCompleted"
        t = self._conditions
        return {
            "phase": phase,
            "hostIP": HOST_IP,
            "hostIPs": [{"ip": HOST_IP}],
            "podIP": self._ip,
            "podIPs": [{"ip": self._ip}],
            "startTime": self._start_time,
            "conditions": [
                t.condition("PodReadyToStartContainers", True),
                t.condition("Initialized", True),
                t.condition("ContainersReady", not unready, reason, message),
                t.condition("Ready", not unready, reason, message),
                t.condition("PodScheduled", True),
            ],
            "containerStatuses": statuses,
        }

    def _publish(self) -> None:
        status = self._status()
        if status == self._last_status:
            return
        meta = self.pod["metadata"]
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
        try:
            self.kubelet.api.request("PATCH", path, {"status": status}, content_type=SMP)
            self._last_status = status
        except ApiError as exc:
            if exc.status_code == 404:
                self._gone = True
            else:
                self.kubelet.log(f"{self.pod_name}: status patch failed: {exc}")
        except httpx.HTTPError as exc:
            self.kubelet.log(f"{self.pod_name}: status patch failed: {exc!r}")

    def _kill_all(self, grace: float) -> None:
        procs = [c.proc for c in self._containers if c.proc is not None]
        for proc in procs:
            _signal_group(proc, signal.SIGTERM if grace > 0 else signal.SIGKILL)
        deadline = time.monotonic() + grace
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(proc, signal.SIGKILL)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kubelet.log(f"{self.pod_name}: pid {proc.pid} survived SIGKILL")
        for c in self._containers:
            c.proc = None

    def _terminate(self) -> None:
        grace = podspec.grace_seconds(self.pod)
        self.kubelet.log(f"{self.pod_name}: deleting (grace {grace:g}s)")
        self._kill_all(grace)
        self._delete_pod()

    def _delete_pod(self) -> None:
        meta = self.pod["metadata"]
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": self.uid},
        }
        try:
            self.kubelet.api.request("DELETE", path, body, ok=(200, 202, 404, 409))
        except (ApiError, httpx.HTTPError) as exc:
            self.kubelet.log(f"{self.pod_name}: delete failed: {exc}")


class Kubelet:
    """Watches the bed's app pods and keeps one PodWorker per scheduled pod."""

    def __init__(
        self,
        api: KubeApi,
        network: PodNetwork,
        work_dir: Path,
        log_path: Path,
        images: ImageRegistry | None = None,
    ) -> None:
        self.api = api
        self.images = images if images is not None else default_registry()
        self.network = network
        self.work_dir = work_dir
        self.http = httpx.Client(verify=False, follow_redirects=False)  # noqa: S501 - kubelet probes do not verify
        self.stopping = False
        self._log: TextIO = log_path.open("a", buffering=1)
        self._workers: dict[str, PodWorker] = {}
        self._lock = threading.Lock()
        self._watch_socket: socket.socket | None = None
        self._thread = threading.Thread(target=self._watch_loop, name="bed-kubelet", daemon=True)
        self._synced = threading.Event()

    def start(self, timeout: float = 30.0) -> None:
        self._thread.start()
        if not self._synced.wait(timeout):
            raise RuntimeError(f"the bed's kubelet could not list pods within {timeout:.0f}s")

    def stop(self) -> None:
        self.stopping = True
        sock = self._watch_socket
        if sock is not None:
            # Wakes the watch thread out of its blocking read (closing the response would not).
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=10)
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.gone()
        for worker in workers:
            worker.join(timeout=10)
        self.http.close()
        self.api.close()
        self._log.close()

    def log(self, message: str) -> None:
        if not self._log.closed:
            self._log.write(f"{_now()} {message}\n")

    def read_data(self, namespace: str, kind: str, name: str) -> dict[str, str] | None:
        """A ConfigMap's data or a Secret's decoded data; None when it does not exist."""
        plural = "configmaps" if kind == "configmap" else "secrets"
        try:
            obj = self.api.get(f"/api/v1/namespaces/{namespace}/{plural}/{name}")
        except ApiError as exc:
            if exc.status_code == 404:
                return None
            raise
        data: dict[str, str] = dict(obj.get("data") or {})
        if kind == "secret":
            data = {k: base64.b64decode(v).decode() for k, v in data.items()}
        return data

    def _watch_loop(self) -> None:
        version = ""
        while not self.stopping:
            try:
                if not version:
                    listed = self.api.get("/api/v1/pods", params={"labelSelector": SELECTOR})
                    version = listed["metadata"]["resourceVersion"]
                    self._resync(listed["items"])
                    self._synced.set()
                version = self._watch(version)
            except Exception as exc:  # noqa: BLE001 - keep serving; the log says what happened
                if self.stopping:
                    return
                self.log(f"watch failed: {exc!r}; listing again")
                version = ""
                time.sleep(1.0)

    def _watch(self, version: str) -> str:
        params = {
            "labelSelector": SELECTOR,
            "watch": "1",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "300",
        }
        timeout = httpx.Timeout(10.0, read=330.0)
        with self.api.stream("GET", "/api/v1/pods", params=params, timeout=timeout) as response:
            stream = response.extensions.get("network_stream")
            self._watch_socket = stream.get_extra_info("socket") if stream is not None else None
            if self.stopping:
                return ""
            if response.status_code != 200:
                raise RuntimeError(f"watch answered {response.status_code}")
            for line in response.iter_lines():
                if self.stopping:
                    break
                if not line:
                    continue
                event = json.loads(line)
                kind, obj = event["type"], event["object"]
                if kind == "ERROR":
                    return ""  # e.g. 410 Gone: list again
                version = obj["metadata"]["resourceVersion"]
                if kind == "BOOKMARK":
                    continue
                if kind == "DELETED":
                    self._forget(obj["metadata"]["uid"])
                else:
                    self._seen(obj)
        return version

    def _resync(self, pods: list[Pod]) -> None:
        uids = {p["metadata"]["uid"] for p in pods}
        with self._lock:
            stale = [uid for uid in self._workers if uid not in uids]
        for uid in stale:
            self._forget(uid)
        for pod in pods:
            self._seen(pod)

    def _seen(self, pod: Pod) -> None:
        if not pod["spec"].get("nodeName"):
            return
        uid = pod["metadata"]["uid"]
        deleting = bool(pod["metadata"].get("deletionTimestamp"))
        with self._lock:
            worker = self._workers.get(uid)
            # A worker that returned early (a finished pod) is replaced to carry out a deletion.
            if worker is None or (deleting and not worker.is_alive()):
                worker = PodWorker(self, pod)
                self._workers[uid] = worker
                worker.start()
                return
        worker.update(pod)

    def _forget(self, uid: str) -> None:
        with self._lock:
            worker = self._workers.pop(uid, None)
        if worker is not None:
            worker.gone()


def _summary(status: dict[str, Any]) -> tuple[Any, ...]:
    """What must agree between the pod's status and the kubelet's: phase, address, readiness."""
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    ready = [c.get("ready") for c in status.get("containerStatuses") or []]
    return (
        status.get("phase"),
        status.get("podIP"),
        conditions.get("Ready"),
        conditions.get("ContainersReady"),
        ready,
    )


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
