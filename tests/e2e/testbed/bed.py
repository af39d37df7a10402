"""Starts and stops the whole bed: etcd, the control plane, kwok nodes, CRDs, Argo, the executor,
and the data plane (app pods as processes, Traefik as the Gateway, Prometheus, the audit log)."""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.e2e.testbed import data_plane as dataplane
from tests.e2e.testbed import paths, traefik, traffic
from tests.e2e.testbed.audit import AuditLog, write_policy
from tests.e2e.testbed.data_plane import Credentials, DataPlane
from tests.e2e.testbed.executor import PodExecutor
from tests.e2e.testbed.images import ImageRegistry
from tests.e2e.testbed.kubeapi import JSON, KubeApi, object_path
from tests.e2e.testbed.kwok_stages import narrowed_stages
from tests.e2e.testbed.pki import make_pki
from tests.e2e.testbed.process import ManagedProcess, free_port

ARGO_NAMESPACE = "argo"
NODE_COUNT = 2
NARROW_USER = "narrow-user"


class BedError(RuntimeError):
    """The bed could not be brought up; the message says which piece and why."""


@dataclass
class ClusterBed:
    root: Path
    server: str
    ca_file: Path
    admin_token: str
    narrow_token: str
    kubeconfig: Path
    argo_url: str
    versions: dict[str, str]
    narrow_user: str = NARROW_USER
    argo_namespace: str = ARGO_NAMESPACE
    node_names: list[str] = field(default_factory=list)
    startup_seconds: float = 0.0
    keep: bool = False
    processes: list[ManagedProcess] = field(default_factory=list)
    executor: PodExecutor | None = None
    api: KubeApi | None = None
    audit_log: Path = Path()
    """The API server's audit log (JSON lines; writes at Metadata level)."""
    gateway_url: str = ""
    """The bed Gateway's listener through Traefik: http://127.0.0.1:<port>; send a route's Host."""
    prometheus_url: str = ""
    traefik_metrics_url: str = ""
    gateway_namespace: str = traefik.GATEWAY_NAMESPACE
    gateway_name: str = traefik.GATEWAY_NAME
    gateway_class: str = traefik.GATEWAY_CLASS
    gateway_listener: str = traefik.LISTENER
    data_plane: DataPlane | None = None
    _stopped: bool = False

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def audit(self) -> AuditLog:
        return AuditLog(self.audit_log)

    @property
    def images(self) -> ImageRegistry:
        """The registry the app kubelet runs command-less containers from (images.py)."""
        plane = self.data_plane
        if plane is None or plane.kubelet is None:
            raise RuntimeError("this bed was started without its data plane")
        return plane.kubelet.images

    @property
    def pod_network(self) -> str:
        """The network pod addresses come from (a locally routed /20, or 127.x as a fallback)."""
        plane = self.data_plane
        return str(plane.network.network) if plane and plane.network else ""

    @property
    def data_plane_note(self) -> str:
        """Why the data plane is degraded (pods on loopback: no EndpointSlices), or empty."""
        plane = self.data_plane
        return plane.network.note if plane and plane.network else ""

    def send_traffic(self, host: str, **options: Any) -> traffic.TrafficResult:
        """Requests through the bed's Gateway with `Host: host`; see traffic.send."""
        if not self.gateway_url:
            raise RuntimeError("this bed was started without its data plane")
        return traffic.send(self.gateway_url, host, **options)

    def prometheus_query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query on the bed's Prometheus: the result vector."""
        response = httpx.get(
            f"{self.prometheus_url}/api/v1/query", params={"query": expr}, timeout=10
        )
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result

    def restart_argo_server(self, down_s: float = 0.0) -> float:
        """Kills argo-server (SIGKILL), keeps it down ``down_s`` seconds, starts it again on
        the same port and waits until it serves; returns how long it was down."""
        old = next(p for p in self.processes if p.name == "argo-server" and p.alive())
        killed = time.monotonic()
        os.killpg(old.proc.pid, signal.SIGKILL)
        old.proc.wait(timeout=10)
        time.sleep(down_s)
        new = ManagedProcess(old.name, old.argv, old.log_path.parent, env=old.env, cwd=old.cwd)
        self.processes.append(new)
        _wait_for_argo_server(new, self.argo_url, self.admin_token)
        return time.monotonic() - killed

    def kubeconfig_for(self, user: str, token: str) -> Path:
        target = self.root / f"{user}.kubeconfig"
        write_kubeconfig(target, self.server, self.ca_file, user, token)
        return target

    def stop(self, keep_files: bool = False) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.data_plane is not None:
            dataplane.stop(self.data_plane)
        if self.executor is not None:
            self.executor.stop()
        for proc in reversed(self.processes):
            proc.stop()
        if self.api is not None:
            self.api.close()
        if not (self.keep or keep_files):
            shutil.rmtree(self.root, ignore_errors=True)


def write_kubeconfig(target: Path, server: str, ca_file: Path, user: str, token: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "testbed",
                "cluster": {"server": server, "certificate-authority": str(ca_file)},
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "testbed", "context": {"cluster": "testbed", "user": user}}],
        "current-context": "testbed",
    }
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    target.chmod(0o600)


def _http_ok(url: str, token: str | None = None, verify: Any = False) -> bool:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(url, headers=headers, verify=verify, timeout=2.0).status_code == 200


def start_bed(
    keep: bool | None = None, with_argo: bool = True, with_data_plane: bool = True
) -> ClusterBed:
    """Brings the bed up, or raises BedError after stopping whatever it had started."""
    started = time.monotonic()
    try:
        bins = paths.locate_binaries(with_argo=with_argo, with_data_plane=with_data_plane)
        crd_files = paths.reference_crds() + paths.supplementary_gateway_crds()
    except paths.MissingPieceError as exc:
        raise BedError(str(exc)) from exc
    if keep is None:
        keep = os.environ.get("GATEKEEPER_TESTBED_KEEP", "") not in ("", "0")
    root = Path(tempfile.mkdtemp(prefix="gatekeeper-testbed-"))
    (root / "logs").mkdir()
    admin_token = secrets.token_hex(24)
    narrow_token = secrets.token_hex(24)
    api_port = free_port()
    try:
        ca_pki = make_pki(root / "pki")
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        raise BedError(f"the e2e test bed could not make its certificates: {exc}") from exc
    bed = ClusterBed(
        root=root,
        server=f"https://127.0.0.1:{api_port}",
        ca_file=ca_pki.ca_cert,
        admin_token=admin_token,
        narrow_token=narrow_token,
        kubeconfig=root / "admin.kubeconfig",
        argo_url="",
        versions=bins.versions,
        keep=keep,
        audit_log=root / "logs" / "audit.log",
    )
    atexit.register(bed.stop)
    try:
        minimal = bins.argo_minimal_crds if with_argo else None
        # Reading the CRDs (5 MB of YAML, ~2 s) overlaps etcd's and the API server's start.
        with ThreadPoolExecutor(max_workers=1) as reader:
            crds = reader.submit(_crd_docs, crd_files, minimal)
            _bring_up(bed, bins, crds, ca_pki, api_port, with_argo, with_data_plane)
    except BaseException as exc:
        # Keep the logs of a bed that failed to come up: the message points at them.
        bed.stop(keep_files=True)
        if isinstance(exc, BedError) or not isinstance(exc, Exception):
            raise
        raise BedError(f"the e2e test bed did not come up: {exc} (logs in {root})") from exc
    bed.startup_seconds = time.monotonic() - started
    return bed


def _bring_up(
    bed: ClusterBed,
    bins: paths.Binaries,
    crds: Future[list[JSON]],
    pki: Any,
    api_port: int,
    with_argo: bool,
    with_data_plane: bool,
) -> None:
    root, logs = bed.root, bed.log_dir
    cm_token, sched_token = secrets.token_hex(24), secrets.token_hex(24)
    plane_users = Credentials(*(secrets.token_hex(24) for _ in range(3)))
    tokens = root / "tokens.csv"
    tokens.write_text(
        f'{bed.admin_token},testbed-admin,uid-admin,"system:masters"\n'
        f"{cm_token},system:kube-controller-manager,uid-kcm\n"
        f"{sched_token},system:kube-scheduler,uid-sched\n"
        f"{bed.narrow_token},{NARROW_USER},uid-narrow\n"
        + (plane_users.token_lines() if with_data_plane else "")
    )
    tokens.chmod(0o600)
    write_kubeconfig(bed.kubeconfig, bed.server, pki.ca_cert, "testbed-admin", bed.admin_token)
    cm_kubeconfig = bed.kubeconfig_for("kube-controller-manager", cm_token)
    sched_kubeconfig = bed.kubeconfig_for("kube-scheduler", sched_token)

    def start(name: str, argv: list[str], env: dict[str, str] | None = None) -> ManagedProcess:
        proc = ManagedProcess(name, argv, logs, env=env, cwd=root)
        bed.processes.append(proc)
        return proc

    # etcd
    etcd_port, peer_port = free_port(), free_port()
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    peer_url = f"http://127.0.0.1:{peer_port}"
    etcd = start(
        "etcd",
        [
            str(bins.etcd),
            "--name=testbed",
            f"--data-dir={root / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=testbed={peer_url}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
    )
    etcd.wait_until(lambda: _http_ok(f"{etcd_url}/health"), 30, "healthy")

    # kube-apiserver
    apiserver = start(
        "kube-apiserver",
        [
            str(bins.kube_apiserver),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={api_port}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--token-auth-file={tokens}",
            "--authorization-mode=RBAC",
            "--anonymous-auth=true",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--allow-privileged=true",
            "--endpoint-reconciler-type=none",
            f"--cert-dir={root / 'apiserver-certs'}",
            "--profiling=false",
            f"--audit-policy-file={write_policy(root / 'audit-policy.yaml')}",
            f"--audit-log-path={bed.audit_log}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",
            "--v=1",
        ],
    )
    api = KubeApi(bed.server, bed.admin_token, pki.ca_cert)
    bed.api = api
    apiserver.wait_until(
        lambda: _http_ok(f"{bed.server}/readyz", bed.admin_token, _ssl(pki.ca_cert)), 60, "ready"
    )

    # controller-manager, scheduler and kwok start together; nodes and CRDs go in meanwhile.
    cm_port, sched_port = free_port(), free_port()
    cm = start(
        "kube-controller-manager",
        [
            str(bins.kube_controller_manager),
            f"--kubeconfig={cm_kubeconfig}",
            f"--authentication-kubeconfig={cm_kubeconfig}",
            f"--authorization-kubeconfig={cm_kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={cm_port}",
            f"--cert-dir={root / 'kcm-certs'}",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.ca_cert}",
            "--cluster-name=testbed",
            "--v=1",
        ],
    )
    sched = start(
        "kube-scheduler",
        [
            str(bins.kube_scheduler),
            f"--kubeconfig={sched_kubeconfig}",
            f"--authentication-kubeconfig={sched_kubeconfig}",
            f"--authorization-kubeconfig={sched_kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={sched_port}",
            f"--cert-dir={root / 'sched-certs'}",
            "--v=1",
        ],
    )
    stages = narrowed_stages(bins.kwok_stages, root / "kwok-stages")
    kwok = start(
        "kwok",
        [
            str(bins.kwok),
            f"--kubeconfig={bed.kubeconfig}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--node-ip=10.250.0.1",
            # The heartbeat Stage renews node status every 10 min and relies on kwok's leases
            # meanwhile; without them kube-controller-manager finds the nodes silent after 50 s,
            # marks them NotReady and every pod on them not Ready.
            "--node-lease-duration-seconds=40",
            "--cidr=10.244.0.0/16",
            f"--server-address=127.0.0.1:{free_port()}",
            *[f"--config={s}" for s in stages],
        ],
    )

    for i in range(NODE_COUNT):
        name = f"kwok-node-{i}"
        api.create(
            "/api/v1/nodes",
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {
                        "kwok.x-k8s.io/node": "fake",
                        "node.alpha.kubernetes.io/ttl": "0",
                    },
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "type": "kwok",
                    },
                },
            },
        )
        bed.node_names.append(name)

    _install_crds(api, crds.result())
    if with_data_plane:
        assert bins.traefik is not None and bins.prometheus is not None
        bed.data_plane = dataplane.launch(
            api, root, bed.server, pki.ca_cert, bins.traefik, bins.prometheus, plane_users, start
        )
        bed.gateway_url = bed.data_plane.gateway_url
        bed.prometheus_url = bed.data_plane.prometheus_url
        bed.traefik_metrics_url = bed.data_plane.traefik_metrics_url

    cm.wait_until(lambda: _http_ok(f"https://127.0.0.1:{cm_port}/healthz"), 30, "healthy")
    sched.wait_until(lambda: _http_ok(f"https://127.0.0.1:{sched_port}/healthz"), 30, "healthy")
    kwok.wait_until(
        lambda: all(_node_ready(api, n) for n in bed.node_names), 30, "making its nodes Ready"
    )

    if with_argo:
        _start_argo(bed, bins, api, start)
    api.wait_for(
        lambda: api.exists("/api/v1/namespaces/default/serviceaccounts/default"),
        30,
        "the default service account (kube-controller-manager)",
    )
    if bed.data_plane is not None:
        kubelet_api = KubeApi(bed.server, plane_users.kubelet_token, pki.ca_cert)
        dataplane.finish(bed.data_plane, api, kubelet_api, root, logs)
    for proc in bed.processes:
        if not proc.alive():
            raise BedError(proc.describe_failure("stopped during start-up"))

    bed.executor = PodExecutor(
        KubeApi(bed.server, bed.admin_token, pki.ca_cert), root / "pods", logs / "pod-executor.log"
    )
    bed.executor.start()


ARGO_READY_PATHS = (
    "/api/v1/version",
    f"/api/v1/workflows/{ARGO_NAMESPACE}",
    f"/api/v1/workflow-templates/{ARGO_NAMESPACE}",
)


def _wait_for_argo_server(argo_server: ManagedProcess, url: str, token: str) -> None:
    # argo-server's HTTP gateway holds one gRPC connection per service to its own port, dialled
    # before that port listens: each backs off on its own (up to 2 minutes) after a refusal, so
    # one service answering says nothing of the others. Wait for every service the tests use.
    argo_server.wait_until(
        lambda: all(_http_ok(f"{url}{path}", token) for path in ARGO_READY_PATHS),
        180,
        "serving its API (" + ", ".join(ARGO_READY_PATHS) + ")",
    )


def _start_argo(bed: ClusterBed, bins: paths.Binaries, api: KubeApi, start: Any) -> None:
    """The Argo namespace, the controller's configuration, workflow-controller and argo-server."""
    api.create(
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ARGO_NAMESPACE}},
    )
    api.apply(
        f"/api/v1/namespaces/{ARGO_NAMESPACE}/configmaps/workflow-controller-configmap",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "workflow-controller-configmap", "namespace": ARGO_NAMESPACE},
            "data": {
                "metricsConfig": "enabled: false\n",
                "telemetryConfig": "enabled: false\n",
            },
        },
    )
    argo_version = bins.versions["ARGO_VERSION"]
    start(
        "workflow-controller",
        [
            str(bins.workflow_controller),
            f"--kubeconfig={bed.kubeconfig}",
            f"--namespace={ARGO_NAMESPACE}",
            f"--executor-image=quay.io/argoproj/argoexec:{argo_version}",
            "--workflow-workers=4",
            "--pod-cleanup-workers=2",
            "--cron-workflow-workers=1",
            "--workflow-ttl-workers=1",
            "--workflow-archive-workers=1",
            "--qps=50",
            "--burst=100",
        ],
        # A short requeue, as Argo's own e2e set-up uses, turns steps around in ~1s, not ~10s.
        env={
            "LEADER_ELECTION_DISABLE": "true",
            "KUBECONFIG": str(bed.kubeconfig),
            "DEFAULT_REQUEUE_TIME": "1s",
        },
    )
    argo_port = free_port()
    bed.argo_url = f"http://127.0.0.1:{argo_port}"
    argo_server = start(
        "argo-server",
        [
            str(bins.argo),
            "server",
            f"--kubeconfig={bed.kubeconfig}",
            f"--namespace={ARGO_NAMESPACE}",
            "--auth-mode=client",
            "--secure=false",
            f"--port={argo_port}",
            "--browser=false",
        ],
        # Client auth builds each request's API config from the default loading rules.
        env={"KUBECONFIG": str(bed.kubeconfig)},
    )
    _wait_for_argo_server(argo_server, bed.argo_url, bed.admin_token)
    api.wait_for(
        lambda: api.exists(f"/api/v1/namespaces/{ARGO_NAMESPACE}/serviceaccounts/default"),
        30,
        "the argo namespace's default service account (kube-controller-manager)",
    )


def _ssl(ca_file: Path) -> Any:
    import ssl

    return ssl.create_default_context(cafile=str(ca_file))


def _node_ready(api: KubeApi, name: str) -> bool:
    node = api.get(f"/api/v1/nodes/{name}")
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in node.get("status", {}).get("conditions", [])
    )


def _yaml_docs(path: Path) -> list[Any]:
    loader = getattr(
        yaml, "CSafeLoader", yaml.SafeLoader
    )  # the C loader reads the big CRDs 10x faster
    with path.open() as f:
        return list(yaml.load_all(f, Loader=loader))


def _crd_docs(files: list[Path], minimal_dir: Path | None) -> list[JSON]:
    """The reference CRDs, then Argo's minimal CRDs for the kinds they lack."""
    docs: list[JSON] = []
    names: set[str] = set()
    minimal = sorted(minimal_dir.glob("*.yaml")) if minimal_dir else []
    for path, optional in [(f, False) for f in files] + [(f, True) for f in minimal]:
        for doc in _yaml_docs(path):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            if optional and doc["metadata"]["name"] in names:
                continue
            docs.append(doc)
            names.add(doc["metadata"]["name"])
    return docs


def _install_crds(api: KubeApi, docs: list[JSON]) -> None:
    """Server-side applies the CRDs, a few at a time, and waits until all are established."""
    names = [doc["metadata"]["name"] for doc in docs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda doc: api.apply(object_path(doc), doc), docs))

    def established() -> bool:
        for name in names:
            crd = api.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            conditions = (crd.get("status") or {}).get("conditions") or []
            if not any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                return False
        return True

    api.wait_for(established, 60, f"{len(names)} CRDs to be established")
