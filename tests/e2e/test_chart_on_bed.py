"""The Helm chart on the bed's real API server.

Every document of the defaults and of every option passes the API server's own validation
(a create with `dryRun=All` and `fieldValidation=Strict`: an unknown or misspelt field is an
error), with the prometheus-operator CRDs installed first; `helm install`, `upgrade` and
`uninstall` run against the bed, dry (`--dry-run=server`) and for real (kwok runs the pods);
the chart's ServiceAccounts may do every verb the gatekeeper uses and nothing beyond, as the
API server's SelfSubjectAccessReview answers for each of them; and the chart's two pods run
`gatekeeper serve` from this checkout (the bed's image `release-gatekeeper:test`), answer their
probes, elect one leader through the Lease the chart's Role allows, and release the bed's demo
app: a `ci` principal, with the token the chart's Secret holds, submits a blue-green release
through the installed service's API, and the leader runs it to its promotion with the target
Role the chart gives it in the app's namespace and the bed's Prometheus as its metrics.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client, config

from tests.e2e.kubernetes_release import (
    install_demo_app,
    load_on,
    namespace_for,
    release_spec,
    wait_for_versions,
)
from tests.e2e.kubernetes_target import Raw, wait_until
from tests.e2e.testbed import APP_LABEL, APP_LABEL_VALUE, ClusterBed
from tests.e2e.testbed.paths import MissingPieceError, helm_binary
from tests.integration.test_chart import CHART, VARIANTS, Doc, Helm
from tests.support.service import database

OPERATOR_CRDS = sorted((Path(__file__).parent / "crds" / "prometheus-operator").glob("*.yaml"))
ROLE_RULES: list[Doc] = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "role.yaml").read_text()
)["rules"]
# The namespaces tests/integration/chart-values-all.yaml names besides the release's own.
ALL_VALUES_NAMESPACES = ["gk-argo", "gk-shop", "gk-cart", "gk-grafana"]


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    try:
        return Helm(helm_binary(), tmp_path_factory.mktemp("helm"))
    except MissingPieceError as e:
        pytest.fail(f"helm for the chart tests: {e}", pytrace=False)


@pytest.fixture(scope="module")
def raw(kube: client.ApiClient) -> Raw:
    return Raw(kube)


@pytest.fixture(scope="module")
def operator_crds(raw: Raw) -> None:
    """ServiceMonitor and PrometheusRule served by the bed (no operator runs them)."""
    assert [p.name for p in OPERATOR_CRDS] == [
        "monitoring.coreos.com_prometheusrules.yaml",
        "monitoring.coreos.com_servicemonitors.yaml",
    ]
    for path in OPERATOR_CRDS:
        raw.apply_crd(yaml.safe_load(path.read_text()))
    for plural in ("servicemonitors", "prometheusrules"):
        wait_until(_served(raw, plural), 30, f"{plural} served")


def _served(raw: Raw, plural: str) -> Callable[[], bool]:
    collection = f"/apis/monitoring.coreos.com/v1/namespaces/default/{plural}"
    return lambda: raw.request("GET", collection)[0] == 200


def _create_namespace(raw: Raw, name: str) -> None:
    status, found = raw.request(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
    )
    assert status in (201, 409), f"namespace {name}: {status} {found.get('message')}"


def _delete_namespace(raw: Raw, name: str) -> None:
    raw.request("DELETE", f"/api/v1/namespaces/{name}")


@pytest.fixture(scope="module")
def fixed_namespaces(raw: Raw) -> Iterator[list[str]]:
    """The namespaces the every-option values name, for the whole module."""
    for name in ALL_VALUES_NAMESPACES:
        _create_namespace(raw, name)
    try:
        yield ALL_VALUES_NAMESPACES
    finally:
        for name in ALL_VALUES_NAMESPACES:
            _delete_namespace(raw, name)


@pytest.fixture
def namespaces(raw: Raw, fixed_namespaces: list[str]) -> Iterator[list[str]]:
    """A fresh release namespace, then the fixed ones of the every-option values."""
    release = f"gk-{secrets.token_hex(3)}"
    _create_namespace(raw, release)
    try:
        yield [release, *fixed_namespaces]
    finally:
        _delete_namespace(raw, release)


# -- the API server's validation -------------------------------------------------------------


class Discovery:
    """Collection paths of kinds, from the API server's discovery documents."""

    def __init__(self, raw: Raw) -> None:
        self.raw = raw
        self.seen: dict[str, list[Doc]] = {}

    def collection(self, doc: Doc) -> str:
        api_version = doc["apiVersion"]
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        if base not in self.seen:
            self.seen[base] = self.raw.ok("GET", base)["resources"]
        (resource,) = [
            r for r in self.seen[base] if r["kind"] == doc["kind"] and "/" not in r["name"]
        ]
        if resource["namespaced"]:
            return f"{base}/namespaces/{doc['metadata']['namespace']}/{resource['name']}"
        return f"{base}/{resource['name']}"


def dry_run_create(raw: Raw, discovery: Discovery, doc: Doc) -> tuple[int, str]:
    path = discovery.collection(doc) + "?dryRun=All&fieldValidation=Strict"
    status, found = raw.request("POST", path, doc)
    return status, str(found.get("message", ""))


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_rendered_document_passes_the_api_servers_strict_validation(
    helm: Helm, raw: Raw, operator_crds: None, namespaces: list[str], variant: str
) -> None:
    # Given the chart rendered into a fresh namespace, and the kinds it uses served
    docs = helm.template(VARIANTS[variant], namespace=namespaces[0])
    discovery = Discovery(raw)

    # When each document is created, dry, with unknown fields refused
    answers = {
        f"{d['kind']} {d['metadata'].get('namespace', '')}/{d['metadata']['name']}": (
            dry_run_create(raw, discovery, d)
        )
        for d in docs
    }

    # Then the API server accepts every one of them
    refused = {k: v for k, v in answers.items() if v[0] != 201}
    assert not refused, refused
    assert len(answers) == len(docs)
    # where a misspelt field would have been refused
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    misspelt = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    status, message = dry_run_create(raw, discovery, misspelt)
    assert status == 400 and 'unknown field "spec.replica"' in message, (status, message)


@pytest.mark.parametrize("variant", VARIANTS)
def test_helm_install_dry_run_server_succeeds(
    helm: Helm, bed: ClusterBed, operator_crds: None, namespaces: list[str], variant: str
) -> None:
    values = VARIANTS[variant]
    done = helm.run(
        "install",
        "gk",
        str(CHART),
        "--namespace",
        namespaces[0],
        "--dry-run=server",
        *(["--values", str(values)] if values else []),
        kubeconfig=bed.kubeconfig,
    )
    assert "STATUS: pending-install" in done.stdout
    assert "kind: Deployment" in done.stdout
    assert "The release gatekeeper" in done.stdout  # NOTES.txt


# -- a real install: rights, upgrade, uninstall ----------------------------------------------


def _token_kubeconfig(bed: ClusterBed, raw: Raw, namespace: str, name: str) -> Path:
    """A kubeconfig holding a TokenRequest token of ServiceAccount ``namespace/name``."""
    token = raw.ok(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 600},
        },
    )["status"]["token"]
    return bed.kubeconfig_for(f"{name}-{namespace}", token)


def _token_client(bed: ClusterBed, raw: Raw, namespace: str, name: str) -> client.ApiClient:
    kubeconfig = _token_kubeconfig(bed, raw, namespace, name)
    api: client.ApiClient = config.new_client_from_config(config_file=str(kubeconfig))
    return api


def allowed(api: client.ApiClient, verb: str, resource: str, group: str = "", **where: str) -> bool:
    """The API server's answer to "may I?" for the holder of ``api``'s token."""
    review: dict[str, Any] = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {
            "resourceAttributes": {"verb": verb, "resource": resource, "group": group, **where}
        },
    }
    answer = Raw(api).ok("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review)
    return bool(answer["status"].get("allowed"))


def _target_checks(namespaces: list[str]) -> list[tuple[str, str, str, str]]:
    """(verb, resource, group, namespace) for every verb of the target's Role."""
    return [
        (verb, resource, group, ns)
        for ns in namespaces
        for rule in ROLE_RULES
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    ]


def _objects_left(raw: Raw, discovery: Discovery, manifest: list[Doc]) -> list[str]:
    left = []
    for doc in manifest:
        status, _ = raw.request("GET", f"{discovery.collection(doc)}/{doc['metadata']['name']}")
        if status != 404:
            left.append(
                f"{doc['kind']} {doc['metadata'].get('namespace', '')}/{doc['metadata']['name']}"
            )
    return left


def test_a_real_install_grants_what_the_gatekeeper_uses_and_upgrades_and_uninstalls_cleanly(
    helm: Helm, bed: ClusterBed, raw: Raw, operator_crds: None, tmp_path: Path
) -> None:
    # Given a namespace for the gatekeeper, two for apps, one for Argo, and one it is not given
    suffix = secrets.token_hex(3)
    home, shop, cart, argo, other = (
        f"{n}-{suffix}" for n in ("gk", "shop", "cart", "argo", "other")
    )
    for name in (home, shop, cart, argo, other):
        _create_namespace(raw, name)
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "store": {"postgres": {"url": "postgresql+psycopg://gk:pw@db.invalid:5432/gk"}},
                "prometheus": {"url": "http://prometheus.invalid:9090"},
                "executor": {"kind": "argo", "argo": {"namespace": argo}},
                "rbac": {"targetNamespaces": [shop, cart]},
                "serviceMonitor": {"enabled": True},
                "prometheusRule": {"enabled": True},
                "grafanaDashboard": {"enabled": True},
            }
        )
    )
    release = "gatekeeper"
    common = ["--namespace", home, "--values", str(values)]
    try:
        # When the chart is installed for real and its pods come up
        helm.run(
            "install",
            release,
            str(CHART),
            *common,
            "--wait",
            "--timeout",
            "120s",
            kubeconfig=bed.kubeconfig,
            timeout=180,
        )
        manifest = [
            d
            for d in yaml.safe_load_all(
                helm.run(
                    "get", "manifest", release, "--namespace", home, kubeconfig=bed.kubeconfig
                ).stdout
            )
            if d
        ]
        deployment = raw.ok(
            "GET", f"/apis/apps/v1/namespaces/{home}/deployments/{release}-release-gatekeeper"
        )
        assert deployment["status"].get("readyReplicas") == 2, deployment["status"]

        # Then the gatekeeper's ServiceAccount may do every verb it uses ...
        gatekeeper = _token_client(bed, raw, home, f"{release}-release-gatekeeper")
        workflow = _token_client(bed, raw, argo, "gatekeeper-workflow")
        lease = f"{release}-release-gatekeeper"
        yes: list[tuple[client.ApiClient, str, str, str, dict[str, str]]] = [
            (gatekeeper, verb, resource, group, {"namespace": ns})
            for verb, resource, group, ns in _target_checks([shop, cart])
        ]
        yes += [
            (gatekeeper, "create", "leases", "coordination.k8s.io", {"namespace": home}),
            (
                gatekeeper,
                "get",
                "leases",
                "coordination.k8s.io",
                {"namespace": home, "name": lease},
            ),
            (
                gatekeeper,
                "update",
                "leases",
                "coordination.k8s.io",
                {"namespace": home, "name": lease},
            ),
        ]
        yes += [
            (gatekeeper, verb, "workflows", "argoproj.io", {"namespace": argo})
            for verb in ("create", "get", "list", "watch", "update", "patch")
        ]
        yes += [
            (gatekeeper, verb, "workflowtemplates", "argoproj.io", {"namespace": argo})
            for verb in ("get", "create", "update")
        ]
        # ... and so may the step pods' ServiceAccount, for what the steps do
        yes += [
            (workflow, verb, "workflowtaskresults", "argoproj.io", {"namespace": argo})
            for verb in ("create", "patch")
        ]
        yes += [
            (workflow, verb, resource, group, {"namespace": ns})
            for verb, resource, group, ns in _target_checks([shop, cart])
        ]
        refused = [
            f"{verb} {group}/{resource} {where}"
            for api, verb, resource, group, where in yes
            if not allowed(api, verb, resource, group, **where)
        ]
        assert not refused, f"refused: {refused}"

        # and nothing beyond
        no = [
            (gatekeeper, "delete", "namespaces", "", {}),
            (gatekeeper, "list", "secrets", "", {}),
            (gatekeeper, "get", "secrets", "", {"namespace": home}),
            (gatekeeper, "update", "deployments", "apps", {"namespace": shop}),
            (gatekeeper, "create", "deployments", "apps", {"namespace": other}),
            (gatekeeper, "create", "deployments", "apps", {"namespace": home}),
            (
                gatekeeper,
                "update",
                "leases",
                "coordination.k8s.io",
                {"namespace": home, "name": "other"},
            ),
            (
                gatekeeper,
                "delete",
                "leases",
                "coordination.k8s.io",
                {"namespace": home, "name": lease},
            ),
            (gatekeeper, "delete", "workflows", "argoproj.io", {"namespace": argo}),
            (gatekeeper, "create", "workflows", "argoproj.io", {"namespace": shop}),
            (workflow, "create", "workflows", "argoproj.io", {"namespace": argo}),
            (workflow, "get", "secrets", "", {"namespace": argo}),
            (workflow, "create", "leases", "coordination.k8s.io", {"namespace": home}),
            (workflow, "list", "pods", "", {"namespace": other}),
        ]
        granted = [
            f"{verb} {group}/{resource} {where}"
            for api, verb, resource, group, where in no
            if allowed(api, verb, resource, group, **where)
        ]
        assert not granted, f"granted beyond what is used: {granted}"

        # When it is upgraded, dry and then for real
        upgrade = [*common, "--set", "replicaCount=3"]
        dry = helm.run(
            "upgrade", release, str(CHART), *upgrade, "--dry-run=server", kubeconfig=bed.kubeconfig
        )
        assert "STATUS: pending-upgrade" in dry.stdout
        helm.run(
            "upgrade",
            release,
            str(CHART),
            *upgrade,
            "--wait",
            "--timeout",
            "120s",
            kubeconfig=bed.kubeconfig,
            timeout=180,
        )
        # Then the change is applied
        deployment = raw.ok(
            "GET", f"/apis/apps/v1/namespaces/{home}/deployments/{release}-release-gatekeeper"
        )
        assert deployment["spec"]["replicas"] == 3

        # When it is uninstalled, dry and then for real
        dry = helm.run(
            "uninstall", release, "--namespace", home, "--dry-run", kubeconfig=bed.kubeconfig
        )
        assert "uninstalled" in dry.stdout
        assert len(_objects_left(raw, Discovery(raw), manifest)) == len(manifest)
        helm.run(
            "uninstall",
            release,
            "--namespace",
            home,
            "--wait",
            "--timeout",
            "120s",
            kubeconfig=bed.kubeconfig,
            timeout=180,
        )

        # Then nothing it installed is left, in any namespace
        assert _objects_left(raw, Discovery(raw), manifest) == []
    finally:
        for name in (home, shop, cart, argo, other):
            _delete_namespace(raw, name)


# -- the chart's pods running `gatekeeper serve` ----------------------------------------------

IMAGE = "release-gatekeeper:test"
# The image's entrypoint on the bed, which runs containers as processes of this checkout and
# mounts no volumes: the chart's paths inside the container (its config file, the tokens
# Secret's folder, /tmp, the data folder) are mapped to folders of the test, as the kubelet's
# mounts would place them (the paths the config file names are mapped by _mounted, below),
# and the process binds its pod's address (every pod shares this machine's ports). Then it is
# the image's own entrypoint: `gatekeeper` with the container's args.
MOUNT_SHIM = """
import json, os, sys
mounts = json.loads(os.environ["BED_MOUNTS"])
def mapped(value):
    for inside, outside in mounts.items():
        if value == inside or value.startswith(inside + "/"):
            return outside + value[len(inside):]
    return value
for name in ("HOME", "TMPDIR", "GATEKEEPER_HOME"):
    if name in os.environ:
        os.environ[name] = mapped(os.environ[name])
args = [mapped(a) for a in sys.argv[1:]] + ["--host", os.environ["POD_IP"]]
os.execv(sys.executable, [sys.executable, "-m", "gatekeeper.cli", *args])
"""


def _mounted(config: str, mounts: dict[str, str]) -> str:
    """The config file as the process reads it: the paths inside the container it names (the
    tokens file) mapped to the test's folders, as MOUNT_SHIM maps the arguments."""

    def mapped(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: mapped(v) for k, v in value.items()}
        if isinstance(value, list):
            return [mapped(v) for v in value]
        if isinstance(value, str):
            for inside, outside in mounts.items():
                if value == inside or value.startswith(inside + "/"):
                    return outside + value[len(inside) :]
        return value

    return yaml.safe_dump(mapped(yaml.safe_load(config)))


def _pod_logs(bed: ClusterBed, namespace: str, pods: list[str]) -> str:
    """The end of each pod's `gatekeeper serve` output, as the bed's kubelet keeps it."""
    tails = []
    for pod in pods:
        log = bed.root / "app-pods" / namespace / pod / "gatekeeper.log"
        text = log.read_text(errors="replace") if log.exists() else "(no log)"
        tails.append(f"--- {pod}\n{text[-3000:]}")
    return "\n".join(tails)


def _follow(url: str, headers: dict[str, str], timeout: float) -> dict[str, Any]:
    """GET a release until it ends or ``timeout`` runs out: its last answer."""
    seen: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = httpx.get(url, headers=headers, timeout=10)
        if answer.status_code == 200:
            seen = answer.json()
            if seen["final"]:
                break
        time.sleep(1)
    return seen


def _metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(f"{name} ") or line.startswith(f"{name}{{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_the_charts_pods_run_gatekeeper_serve_elect_one_leader_and_release_the_demo_app(
    helm: Helm, bed: ClusterBed, raw: Raw, tmp_path: Path
) -> None:
    # Given a fresh namespace, one for the demo app, a PostgreSQL schema of its own, a ci
    # token for the chart's Secret, and the image on the bed
    suffix = secrets.token_hex(3)
    home, shop = f"gk-serve-{suffix}", f"gk-serve-shop-{suffix}"
    _create_namespace(raw, home)
    release = "gatekeeper"
    fullname = f"{release}-release-gatekeeper"
    ci_token = "gkt_" + secrets.token_urlsafe(32)
    mounts = {
        "/etc/gatekeeper/config.yaml": str(tmp_path / "config.yaml"),
        "/etc/gatekeeper/auth": str(tmp_path / "auth"),
        "/var/lib/gatekeeper": str(tmp_path / "data"),
        "/tmp": str(tmp_path / "tmp"),
    }
    for folder in ("auth", "data", "tmp"):
        (tmp_path / folder).mkdir()
    bed.images.register(
        IMAGE,
        ["python", "-c", MOUNT_SHIM],
        env={"BED_MOUNTS": json.dumps(mounts), "PYTHONUNBUFFERED": "1"},
    )
    kubeconfig = tmp_path / "gatekeeper.kubeconfig"
    try:
        # the demo app at v1, served through the Gateway, in a namespace of the chart's RBAC
        app = install_demo_app(bed, raw, namespace_for(raw, shop), router="gateway-api")
        with database("postgres", tmp_path) as db_url:
            values = tmp_path / "values.yaml"
            values.write_text(
                yaml.safe_dump(
                    {
                        "image": {"repository": "release-gatekeeper", "tag": "test"},
                        "replicaCount": 0,
                        "store": {"postgres": {"url": db_url}},
                        "prometheus": {"url": bed.prometheus_url},
                        "auth": {
                            "tokens": [{"principal": "ci-bot", "roles": ["ci"], "token": ci_token}]
                        },
                        "rbac": {"targetNamespaces": [shop]},
                        "podLabels": {APP_LABEL: APP_LABEL_VALUE},
                        "extraEnv": [
                            {
                                "name": "POD_IP",
                                "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
                            },
                            # the ServiceAccount's token, as a pod's in-cluster config has it
                            {"name": "KUBECONFIG", "value": str(kubeconfig)},
                        ],
                    }
                )
            )
            common = ["--namespace", home, "--values", str(values)]
            # the config file the kubelet would mount, as the chart renders it
            (rendered_config,) = [
                d["data"]["config.yaml"]
                for d in helm.template(values, release=release, namespace=home)
                if d["kind"] == "ConfigMap"
            ]
            (tmp_path / "config.yaml").write_text(_mounted(rendered_config, mounts))

            # When the chart is installed, its ServiceAccount's token handed to the pods, and
            # it is scaled to two replicas
            helm.run("install", release, str(CHART), *common, kubeconfig=bed.kubeconfig)
            installed = raw.ok("GET", f"/api/v1/namespaces/{home}/configmaps/{fullname}")
            assert installed["data"]["config.yaml"] == rendered_config
            kubeconfig.write_text(_token_kubeconfig(bed, raw, home, fullname).read_text())
            # the tokens file the kubelet would mount from the chart's Secret
            tokens = raw.ok("GET", f"/api/v1/namespaces/{home}/secrets/{fullname}-tokens")
            (tmp_path / "auth" / "tokens").write_bytes(base64.b64decode(tokens["data"]["tokens"]))
            helm.run(
                "upgrade",
                release,
                str(CHART),
                *common,
                "--set",
                "replicaCount=2",
                "--wait",
                "--timeout",
                "120s",
                kubeconfig=bed.kubeconfig,
                timeout=180,
            )

            # Then both pods are ready (their /readyz answers) and serve /healthz ...
            pods = raw.pods(home, f"app.kubernetes.io/instance={release}")
            assert len(pods) == 2, [p["metadata"]["name"] for p in pods]
            addresses = {p["metadata"]["name"]: p["status"]["podIP"] for p in pods}
            for name, ip in addresses.items():
                assert httpx.get(f"http://{ip}:8080/healthz", timeout=5).status_code == 200, name
                assert httpx.get(f"http://{ip}:8080/readyz", timeout=5).status_code == 200, name

            # ... and the Lease, taken with the chart's Role, makes exactly one of them leader
            def one_leader() -> dict[str, float] | None:
                leaders = {
                    name: _metric(
                        httpx.get(f"http://{ip}:8080/metrics", timeout=5).text,
                        "gatekeeper_leader",
                    )
                    for name, ip in addresses.items()
                }
                found = {name: value for name, value in leaders.items() if value is not None}
                return found if sorted(found.values()) == [0.0, 1.0] else None

            leaders: dict[str, float] = wait_until(
                one_leader, 60, "one gatekeeper_leader 1 and one 0"
            )
            # the Lease was created, and is renewed (update), with the chart's ServiceAccount
            path = f"/apis/coordination.k8s.io/v1/namespaces/{home}/leases/{fullname}"
            first = raw.ok("GET", path)["spec"]
            assert first.get("holderIdentity"), first
            wait_until(
                lambda: raw.ok("GET", path)["spec"].get("renewTime") != first["renewTime"],
                30,
                "the leader to renew its Lease",
            )

            # When the ci principal, with the token of the chart's Secret, submits a release
            # of the demo app's v2 to the standby while users keep asking through the Gateway
            leader, standby = (
                addresses[next(n for n, v in leaders.items() if v == want)] for want in (1.0, 0.0)
            )
            ci = {"Authorization": f"Bearer {ci_token}"}
            spec = release_spec(app, "blue-green", version="v2")
            with load_on(bed, app):
                submitted = httpx.post(
                    f"http://{standby}:8080/api/v1/releases",
                    json=spec.model_dump(mode="json", exclude_defaults=True),
                    headers=ci,
                    timeout=30,
                )
                assert submitted.status_code == 201, submitted.text
                assert submitted.json()["submitted_by"] == "ci-bot"
                rid = submitted.json()["release_id"]
                # the leader drives it; ask it until it ends
                seen = _follow(f"http://{leader}:8080/api/v1/releases/{rid}", ci, timeout=240)
            story = "\n".join(
                f"{e['at']} {e['kind']}: {e['message']}" for e in seen.get("events", [])
            )
            story += "\n" + _pod_logs(bed, home, list(addresses))

            # Then it ran to its end on the bed: promoted ...
            assert seen.get("final"), f"not ended in 240s: {json.dumps(seen)[:2000]}\n{story}"
            assert seen["phase"] == "promoted", f"{seen['reason']}\n{story}"
            assert [s["status"] for s in seen["steps"]] == ["done"] * len(seen["steps"]), story
            # ... and the app's Deployment runs v2, the only version users are served
            deployment = raw.ok("GET", f"/apis/apps/v1/namespaces/{shop}/deployments/shop")
            template = deployment["spec"]["template"]
            assert template["spec"]["containers"][0]["image"] == "demo:v2", template
            assert template["metadata"]["labels"]["version"] == "v2", template
            wait_until(
                lambda: (
                    raw.ok("GET", f"/apis/apps/v1/namespaces/{shop}/deployments/shop")[
                        "status"
                    ].get("updatedReplicas")
                    == 2
                ),
                60,
                "the Deployment's pods to run v2",
            )
            wait_for_versions(bed, app.host, {"v2"})

            helm.run(
                "uninstall",
                release,
                "--namespace",
                home,
                "--wait",
                "--timeout",
                "120s",
                kubeconfig=bed.kubeconfig,
                timeout=180,
            )
    finally:
        _delete_namespace(raw, home)
        _delete_namespace(raw, shop)
