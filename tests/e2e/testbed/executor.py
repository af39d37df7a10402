"""Runs the pods of Argo workflows as local processes, in place of a kubelet.

kwok's Stages leave pods labelled `workflows.argoproj.io/workflow` alone. For each such pod,
once scheduled, the executor runs the main container's command and args (unwrapped from the
`argoexec emissary --` prefix the controller adds) with the container's env, records the
main container's stdout as the node's `outputs.result` in a WorkflowTaskResult, as Argo's own
wait container does, and then sets the pod to Succeeded or Failed with the real exit code.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.e2e.testbed.kubeapi import ApiError, KubeApi

WORKFLOW_LABEL = "workflows.argoproj.io/workflow"
NODE_ID_ANNOTATION = "workflows.argoproj.io/node-id"
COMPLETED_LABEL = "workflows.argoproj.io/report-outputs-completed"
ARGO_AUX_CONTAINERS = {"init", "wait", "supervisor"}
SCRIPT_PATH = "/argo/staging/script"
DEFAULT_TIMEOUT = 600.0
MAX_RESULT = 256 * 1024
HOST_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV")

Pod = dict[str, Any]


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def main_container(pod: Pod) -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod["spec"]["containers"]
    for c in containers:
        if c["name"] == "main":
            return c
    for c in containers:
        if c["name"] not in ARGO_AUX_CONTAINERS:
            return c
    raise ValueError(f"pod {pod['metadata']['name']} has no main container")


def local_argv(container: dict[str, Any]) -> list[str]:
    """The user's command: the container's command and args without Argo's emissary wrapper."""
    argv = list(container.get("command") or []) + list(container.get("args") or [])
    if len(argv) >= 2 and os.path.basename(argv[0]) == "argoexec" and argv[1] == "emissary":
        argv = argv[argv.index("--") + 1 :] if "--" in argv else []
    return argv


LOGS_ON_ERROR = "FallbackToLogsOnError"
TERMINATION_MESSAGE_LINES = 80  # the kubelet's limits for FallbackToLogsOnError
TERMINATION_MESSAGE_BYTES = 2048


def log_tail(*paths: Path) -> str:
    """What a kubelet puts in a failed container's terminated message under
    FallbackToLogsOnError: the end of its log (at most 80 lines, 2048 bytes)."""
    text = b"".join(p.read_bytes() for p in paths if p.exists()).decode(errors="replace")
    tail = "\n".join(text.rstrip("\n").splitlines()[-TERMINATION_MESSAGE_LINES:])
    return tail.encode()[-TERMINATION_MESSAGE_BYTES:].decode(errors="ignore")


REPOSITORY_COMMANDS = {
    "python": [sys.executable],
    "python3": [sys.executable],
    "gatekeeper": [sys.executable, "-m", "gatekeeper.cli"],
}


def repository_command(argv: list[str]) -> list[str]:
    """The repository is the image: `python`/`python3` are this interpreter, `gatekeeper` the
    repository's command line under it (as the gatekeeper's image runs it)."""
    if argv and argv[0] in REPOSITORY_COMMANDS:
        return [*REPOSITORY_COMMANDS[argv[0]], *argv[1:]]
    return argv


def container_env(pod: Pod, container: dict[str, Any]) -> dict[str, str]:
    env = {k: os.environ[k] for k in HOST_ENV if k in os.environ}
    fields = {
        "metadata.name": pod["metadata"]["name"],
        "metadata.namespace": pod["metadata"]["namespace"],
        "metadata.uid": pod["metadata"].get("uid", ""),
        "spec.nodeName": pod["spec"].get("nodeName", ""),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
        "status.podIP": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
    }
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        ref = (item.get("valueFrom") or {}).get("fieldRef")
        if ref and ref.get("fieldPath") in fields:
            env[item["name"]] = fields[ref["fieldPath"]]
    return env


def script_source(pod: Pod) -> str | None:
    """For script templates: the source Argo passes its executor in ARGO_TEMPLATE."""
    for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
        for item in c.get("env") or []:
            if item.get("name") == "ARGO_TEMPLATE" and "value" in item:
                source = (json.loads(item["value"]).get("script") or {}).get("source")
                return str(source) if source is not None else None
    return None


class PodExecutor:
    def __init__(self, api: KubeApi, work_dir: Path, log_path: Path, poll: float = 0.25) -> None:
        self.api = api
        self.work_dir = work_dir
        self.poll = poll
        self._log = log_path.open("a", buffering=1)
        self._seen: set[str] = set()
        self._running: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="argo-pod-executor", daemon=True)
        self._workers: list[threading.Thread] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        with self._lock:
            procs = list(self._running.values())
        for proc in procs:
            _kill_group(proc)
        for worker in self._workers:
            worker.join(timeout=10)
        self.api.close()
        self._log.close()

    def log(self, message: str) -> None:
        if not self._log.closed:
            self._log.write(f"{_now()} {message}\n")

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                pods = self.api.get("/api/v1/pods", params={"labelSelector": WORKFLOW_LABEL})[
                    "items"
                ]
                for pod in pods:
                    self._consider(pod)
            except Exception as exc:  # noqa: BLE001 - keep serving; the log says what went wrong
                self.log(f"poll failed: {exc}")
            self._stop.wait(self.poll)

    def _consider(self, pod: Pod) -> None:
        uid = pod["metadata"]["uid"]
        if pod["metadata"].get("deletionTimestamp"):
            with self._lock:
                proc = self._running.get(uid)
            if proc is not None:
                _kill_group(proc)
            return
        if uid in self._seen or not pod["spec"].get("nodeName"):
            return
        self._seen.add(uid)
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            return
        worker = threading.Thread(target=self._run_pod, args=(pod,), daemon=True)
        self._workers = [w for w in self._workers if w.is_alive()] + [worker]
        worker.start()

    def _run_pod(self, pod: Pod) -> None:
        name = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        try:
            self._execute(pod)
        except Exception as exc:  # noqa: BLE001 - a pod the bed could not run fails, visibly
            self.log(f"{name}: executor error: {exc!r}")
            try:
                self._finish(pod, 1, "", f"test bed executor error: {exc}")
            except Exception as exc2:  # noqa: BLE001
                self.log(f"{name}: could not mark failed: {exc2!r}")

    def _execute(self, pod: Pod) -> None:
        meta = pod["metadata"]
        name = f"{meta['namespace']}/{meta['name']}"
        main = main_container(pod)
        argv = repository_command(local_argv(main))
        env = container_env(pod, main)
        workdir = self.work_dir / meta["namespace"] / meta["name"]
        workdir.mkdir(parents=True, exist_ok=True)
        if SCRIPT_PATH in argv:
            source = script_source(pod)
            if source is not None:
                script = workdir / "script"
                script.write_text(source)
                argv = [str(script) if a == SCRIPT_PATH else a for a in argv]
        self._patch_status(pod, self._running_status(pod))
        timeout = float(pod["spec"].get("activeDeadlineSeconds") or DEFAULT_TIMEOUT)
        self.log(f"{name}: run {argv!r}")
        started = time.monotonic()
        stdout_path = workdir / "stdout"
        message = ""
        with stdout_path.open("wb") as out, (workdir / "stderr").open("wb") as err:
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    env=env,
                    cwd=workdir,
                    start_new_session=True,
                )
            except OSError as exc:
                code, message = (127 if isinstance(exc, FileNotFoundError) else 126), str(exc)
            else:
                with self._lock:
                    self._running[meta["uid"]] = proc
                try:
                    code = proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    _kill_group(proc)
                    code = proc.wait()
                    message = f"deadline of {timeout:.0f}s exceeded"
                finally:
                    with self._lock:
                        self._running.pop(meta["uid"], None)
                if code < 0:
                    code = 128 - code
        stdout = stdout_path.read_bytes()[:MAX_RESULT].decode(errors="replace")
        self.log(f"{name}: exit {code} after {time.monotonic() - started:.1f}s")
        if not message and code != 0 and main.get("terminationMessagePolicy") == LOGS_ON_ERROR:
            message = log_tail(stdout_path, workdir / "stderr")
        self._finish(pod, code, stdout, message)

    def _finish(self, pod: Pod, code: int, stdout: str, message: str) -> None:
        self._report_result(pod, code, stdout)
        self._patch_status(pod, self._final_status(pod, code, message))

    def _report_result(self, pod: Pod, code: int, stdout: str) -> None:
        meta = pod["metadata"]
        node_id = (meta.get("annotations") or {}).get(NODE_ID_ANNOTATION)
        workflow = (meta.get("labels") or {}).get(WORKFLOW_LABEL)
        if not node_id or not workflow:
            return
        owners = [o for o in meta.get("ownerReferences", []) if o.get("kind") == "Workflow"]
        result = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "WorkflowTaskResult",
            "metadata": {
                "name": node_id,
                "namespace": meta["namespace"],
                "labels": {WORKFLOW_LABEL: workflow, COMPLETED_LABEL: "true"},
                "ownerReferences": owners,
            },
            "outputs": {"result": stdout.rstrip("\n"), "exitCode": str(code)},
        }
        path = f"/apis/argoproj.io/v1alpha1/namespaces/{meta['namespace']}/workflowtaskresults"
        try:
            self.api.request("POST", path, result)
        except ApiError as exc:
            if exc.status_code != 409:
                raise
            self.api.merge_patch(
                f"{path}/{node_id}", {k: result[k] for k in ("metadata", "outputs")}
            )

    def _patch_status(self, pod: Pod, status: dict[str, Any]) -> None:
        meta = pod["metadata"]
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
        try:
            self.api.merge_patch(path, {"status": status})
        except ApiError as exc:
            if exc.status_code != 404:  # a pod deleted meanwhile needs no status
                raise

    @staticmethod
    def _container_status(c: dict[str, Any], state: dict[str, Any], ready: bool) -> dict[str, Any]:
        return {
            "name": c["name"],
            "image": c.get("image", ""),
            "imageID": "",
            "ready": ready,
            "started": ready,
            "restartCount": 0,
            "state": state,
        }

    def _running_status(self, pod: Pod) -> dict[str, Any]:
        now = _now()
        done = {
            "terminated": {
                "exitCode": 0,
                "reason": "Completed",
                "startedAt": now,
                "finishedAt": now,
            }
        }
        return {
            "phase": "Running",
            "startTime": now,
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "conditions": _conditions(now, ready=True),
            "initContainerStatuses": [
                self._container_status(c, done, False)
                for c in pod["spec"].get("initContainers", [])
            ],
            "containerStatuses": [
                self._container_status(c, {"running": {"startedAt": now}}, True)
                for c in pod["spec"]["containers"]
            ],
        }

    def _final_status(self, pod: Pod, code: int, message: str) -> dict[str, Any]:
        now = _now()
        main = main_container(pod)["name"]
        statuses = []
        for c in pod["spec"]["containers"]:
            exit_code = code if c["name"] == main else 0
            terminated: dict[str, Any] = {
                "exitCode": exit_code,
                "reason": "Completed" if exit_code == 0 else "Error",
                "startedAt": now,
                "finishedAt": now,
            }
            if c["name"] == main and message:
                terminated["message"] = message
            statuses.append(self._container_status(c, {"terminated": terminated}, False))
        return {
            "phase": "Succeeded" if code == 0 else "Failed",
            "conditions": _conditions(now, ready=False),
            "containerStatuses": statuses,
        }


def _conditions(now: str, ready: bool) -> list[dict[str, str]]:
    flag = "True" if ready else "False"
    return [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
        {"type": "Initialized", "status": "True", "lastTransitionTime": now},
        {"type": "ContainersReady", "status": flag, "lastTransitionTime": now},
        {"type": "Ready", "status": flag, "lastTransitionTime": now},
    ]


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
