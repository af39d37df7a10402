"""The Helm chart, rendered by the pinned helm: lint, then each document of the defaults and of
every option parsed and held against what it must agree with: the target's minimal Role, the
alerts file, the dashboard, the WorkflowTemplate the CLI renders, the values table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gatekeeper.engine.notify.config import parse_notify_config
from gatekeeper.engine.policy_config import parse_policy_yaml
from gatekeeper.engine.service.config import parse_service_config
from gatekeeper.engine.service.tokens_file import parse_tokens_file
from tests.e2e.testbed.paths import MissingPieceError, helm_binary

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "release-gatekeeper"
HERE = Path(__file__).parent
VARIANTS: dict[str, Path | None] = {
    "defaults": None,
    "all": HERE / "chart-values-all.yaml",
    "sqlite": HERE / "chart-values-sqlite.yaml",
}
RELEASE = "gk"
NAMESPACE = "gk-system"
CLUSTER_KINDS = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Namespace"}
ROLE_SOURCE = REPO / "deploy" / "kubernetes" / "role.yaml"
RULES_SOURCE = REPO / "deploy" / "prometheus" / "gatekeeper-rules.yaml"
DASHBOARD_SOURCE = REPO / "deploy" / "grafana" / "release-gatekeeper.json"
Doc = dict[str, Any]


@dataclass(frozen=True)
class Helm:
    """The pinned helm, with its cache, config and data in a folder of the test's own."""

    binary: Path
    home: Path

    def run(
        self, *args: str, kubeconfig: Path | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        env.pop("KUBECONFIG", None)
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        done = subprocess.run(
            [str(self.binary), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
        if check:
            assert done.returncode == 0, f"helm {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done

    def template(
        self,
        values: Path | None,
        *extra: str,
        release: str = RELEASE,
        namespace: str = NAMESPACE,
    ) -> list[Doc]:
        args = ["template", release, str(CHART), "--namespace", namespace, *extra]
        if values is not None:
            args += ["--values", str(values)]
        out = self.run(*args).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]


def find_helm(home: Path) -> Helm:
    """The bed's cached helm; the test is skipped, saying how to build it, when it is missing."""
    try:
        return Helm(helm_binary(), home)
    except MissingPieceError as e:
        pytest.skip(f"{e} (scripts/test-deps builds it)")


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return find_helm(tmp_path_factory.mktemp("helm"))


@pytest.fixture(scope="module")
def rendered(helm: Helm) -> dict[str, list[Doc]]:
    return {name: helm.template(values) for name, values in VARIANTS.items()}


def one(docs: list[Doc], kind: str, name: str | None = None, namespace: str | None = None) -> Doc:
    found = [
        d
        for d in docs
        if d["kind"] == kind
        and (name is None or d["metadata"]["name"] == name)
        and (namespace is None or d["metadata"].get("namespace") == namespace)
    ]
    assert len(found) == 1, f"one {kind} {namespace}/{name}: found {len(found)}"
    return found[0]


def every(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def gatekeeper_cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "gatekeeper.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def service_config(docs: list[Doc]) -> Doc:
    config_map = one(docs, "ConfigMap", namespace=NAMESPACE, name=_fullname(docs))
    config: Doc = yaml.safe_load(config_map["data"]["config.yaml"])
    return config


def _fullname(docs: list[Doc]) -> str:
    return str(one(docs, "Deployment")["metadata"]["name"])


def _values(variant: str) -> Doc:
    defaults: Doc = yaml.safe_load((CHART / "values.yaml").read_text())
    path = VARIANTS[variant]
    given: Doc = yaml.safe_load(path.read_text()) if path else {}
    return _merged(defaults, given)


def _merged(base: Doc, over: Doc) -> Doc:
    out = dict(base)
    for key, value in over.items():
        out[key] = (
            _merged(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


# -- lint and render -------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_helm_lint_strict_passes(helm: Helm, variant: str) -> None:
    values = VARIANTS[variant]
    done = helm.run("lint", str(CHART), "--strict", *(["--values", str(values)] if values else []))
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_document_is_a_named_object_once_and_namespaced_where_it_must_be(
    rendered: dict[str, list[Doc]], variant: str
) -> None:
    docs = rendered[variant]
    keys = []
    for doc in docs:
        assert doc["apiVersion"] and doc["kind"], doc
        meta = doc["metadata"]
        assert meta["name"], doc
        namespaced = doc["kind"] not in CLUSTER_KINDS
        assert bool(meta.get("namespace")) == namespaced, f"{doc['kind']} {meta['name']}"
        keys.append((doc["kind"], meta.get("namespace"), meta["name"]))
    assert len(keys) == len(set(keys)), keys


@pytest.mark.parametrize(
    ("variant", "kinds"),
    [
        (
            "defaults",
            {"ServiceAccount", "ConfigMap", "Role", "RoleBinding", "Service", "Deployment"}
            | {"PodDisruptionBudget"},
        ),
        (
            "all",
            {"ServiceAccount", "ConfigMap", "Role", "RoleBinding", "Service", "Deployment"}
            | {"PodDisruptionBudget", "Secret", "ServiceMonitor", "PrometheusRule"}
            | {"WorkflowTemplate"},
        ),
        (
            "sqlite",
            {"ConfigMap", "ClusterRole", "ClusterRoleBinding", "Service", "Deployment"}
            | {"PersistentVolumeClaim"},
        ),
    ],
)
def test_each_variant_renders_the_kinds_it_promises(
    rendered: dict[str, list[Doc]], variant: str, kinds: set[str]
) -> None:
    assert {d["kind"] for d in rendered[variant]} == kinds


def test_the_defaults_run_two_hardened_replicas_of_gatekeeper_serve(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered["defaults"]
    deployment = one(docs, "Deployment")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert spec["replicas"] == 2
    assert container["image"] == "ghcr.io/release-gatekeeper/gatekeeper:0.1.0"
    assert container["args"] == ["serve", "--config", "/etc/gatekeeper/config.yaml"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert "emptyDir" in volumes[mounts["/var/lib/gatekeeper"]]
    assert mounts["/etc/gatekeeper/config.yaml"] == "config"
    env = {e["name"]: e for e in container["env"]}
    assert env["GATEKEEPER_DB_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "release-gatekeeper-postgres",
        "key": "url",
    }
    assert env["GATEKEEPER_HOME"]["value"] == "/var/lib/gatekeeper"
    service = one(docs, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
    assert one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_sqlite_runs_one_replica_recreated_on_its_claim(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["sqlite"]
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    claim = one(docs, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOncePod"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    config = service_config(docs)
    assert config["store"] == {"url": "sqlite:////var/lib/gatekeeper/store/gatekeeper.db"}
    assert config["lease"]["kind"] == "database"
    env = {e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "GATEKEEPER_DB_URL" not in env


# -- agreement with the sources --------------------------------------------------------------


def test_the_target_role_is_deploy_kubernetes_role_yaml_in_each_target_namespace(
    rendered: dict[str, list[Doc]],
) -> None:
    rules = yaml.safe_load(ROLE_SOURCE.read_text())["rules"]
    docs = rendered["all"]
    for ns in _values("all")["rbac"]["targetNamespaces"]:
        role = one(docs, "Role", name="gatekeeper-target", namespace=ns)
        assert role["rules"] == rules
        binding = one(docs, "RoleBinding", name="gatekeeper-target", namespace=ns)
        assert binding["roleRef"]["name"] == "gatekeeper-target"
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "gatekeeper-controller", "namespace": NAMESPACE},
            {"kind": "ServiceAccount", "name": "gatekeeper-steps", "namespace": "gk-argo"},
        ]
    cluster = one(rendered["sqlite"], "ClusterRole")
    assert cluster["rules"] == rules
    binding = one(rendered["sqlite"], "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "gatekeeper-existing", "namespace": NAMESPACE}
    ]


@pytest.mark.parametrize("variant", ["defaults", "all"])
def test_the_service_account_may_take_and_renew_the_lease_its_config_names(
    rendered: dict[str, list[Doc]], variant: str
) -> None:
    docs = rendered[variant]
    lease = service_config(docs)["lease"]
    assert lease["kind"] == "kubernetes" and lease["namespace"] == NAMESPACE
    role = one(docs, "Role", name=f"{_fullname(docs)}-lease", namespace=NAMESPACE)
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [lease["name"]],
            "verbs": ["get", "update"],
        },
    ]


def test_the_prometheus_rule_carries_the_rules_file_groups_unchanged(
    rendered: dict[str, list[Doc]],
) -> None:
    rule = one(rendered["all"], "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(RULES_SOURCE.read_text())["groups"]
    assert rule["metadata"]["labels"]["release"] == "prometheus"


def test_the_dashboard_config_map_holds_the_dashboard_for_grafanas_sidecar(
    rendered: dict[str, list[Doc]],
) -> None:
    cm = one(rendered["all"], "ConfigMap", namespace="gk-grafana")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Releases"}
    assert json.loads(cm["data"]["release-gatekeeper.json"]) == json.loads(
        DASHBOARD_SOURCE.read_text()
    )


def test_the_service_monitor_scrapes_the_services_metrics_port(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered["all"]
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"


def test_the_workflow_template_is_what_the_cli_renders_for_the_same_settings(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered["all"]
    values = _values("all")
    argo = values["executor"]["argo"]
    image = f"{values['image']['repository']}:{values['image']['tag']}"
    cli = yaml.safe_load(
        gatekeeper_cli(
            "workflow",
            "render",
            "--template",
            "--namespace",
            argo["namespace"],
            "--image",
            image,
            "--service-account",
            argo["workflow"]["serviceAccount"]["name"],
            "--env-from-secret",
            argo["workflow"]["envSecret"]["name"],
        )
    )
    assert one(docs, "WorkflowTemplate") == cli
    # and the service, configured the same way, would ship exactly this template
    config = service_config(docs)["executor"]
    assert config == {
        "kind": "argo",
        "argo": {
            "server": argo["server"],
            "namespace": argo["namespace"],
            "image": image,
            "service_account": argo["workflow"]["serviceAccount"]["name"],
            "env_secret": argo["workflow"]["envSecret"]["name"],
            "insecure": True,
        },
    }


def test_the_step_pods_get_the_same_store_and_prometheus_as_the_service(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered["all"]
    values = _values("all")
    env = one(docs, "Secret", name="gatekeeper-steps-env", namespace="gk-argo")["stringData"]
    assert env == {
        "GATEKEEPER_DB_URL": values["store"]["postgres"]["url"],
        "GATEKEEPER_PROMETHEUS_URL": values["prometheus"]["url"],
    }
    store = one(docs, "Secret", name="gatekeeper-store", namespace=NAMESPACE)["stringData"]
    assert store == {"url": values["store"]["postgres"]["url"]}


def test_the_config_holds_every_section_and_no_secret(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["all"]
    values = _values("all")
    config = service_config(docs)
    assert config["server"] == {
        "host": "::",
        "port": 8080,
        "public_url": "https://gatekeeper.example.com",
    }
    assert config["prometheus"] == {"url": values["prometheus"]["url"]}
    assert config["lease"] == {
        "kind": "kubernetes",
        "name": "gatekeeper-leader",
        "namespace": NAMESPACE,
    }
    assert config["auth"] == {
        "tokens_file": "/etc/gatekeeper/auth/tokens",
        "oidc": {
            "issuer": values["auth"]["oidc"]["issuer"],
            "audience": "gatekeeper",
            "roles_claim": "realm_access.roles",
        },
    }
    assert config["policy"] == values["policy"]
    assert config["notifications"] == values["notifications"]
    # sections the service's own parsers accept
    text = one(docs, "ConfigMap", name=_fullname(docs))["data"]["config.yaml"]
    policy = parse_policy_yaml(text, section="policy")
    assert policy.alertmanager is not None
    notifications = parse_notify_config(config["notifications"])
    assert [r.type for r in notifications.receivers] == ["slack", "pagerduty"]
    assert "store" not in config, "the PostgreSQL URL comes from a Secret, not the ConfigMap"
    text = json.dumps([d for d in docs if d["kind"] == "ConfigMap"])
    assert "secret@" not in text and "gkt_" not in text
    tokens = one(docs, "Secret", name="gatekeeper-tokens")["stringData"]["tokens"]
    assert tokens.splitlines() == [
        "ci:ci:gkt_ci-0123456789abcdefghijklmnopqrstuvwxyz",
        "alice:release-manager,engineering-lead:gkt_alice-0123456789abcdefghijklmnopqrstuvwxyz",
    ]


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_service_reads_the_config_and_tokens_the_chart_writes(
    rendered: dict[str, list[Doc]], variant: str, tmp_path: Path
) -> None:
    docs = rendered[variant]
    config = parse_service_config(service_config(docs), environ={})
    assert config.server.host == ("::" if variant == "all" else "0.0.0.0")
    assert config.lease.kind == _values(variant)["lease"]["kind"]
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    if config.auth.tokens_file is None:
        return
    # the tokens file is mounted where the config says, from the Secret's key
    folder, file = config.auth.tokens_file.rsplit("/", 1)
    volume = {v["name"]: v for v in pod["volumes"]}[mounts[folder]["name"]]
    assert volume["secret"]["items"][0]["path"] == file
    secret = [
        d
        for d in docs
        if d["kind"] == "Secret" and d["metadata"]["name"] == volume["secret"]["secretName"]
    ]
    if secret:
        tokens = tmp_path / "tokens"
        tokens.write_text(secret[0]["stringData"][volume["secret"]["items"][0]["key"]])
        assert [t.principal for t in parse_tokens_file(tokens)] == ["ci", "alice"]


def test_the_charts_copies_are_in_step_with_their_sources() -> None:
    files = CHART / "files"
    assert (files / "target-role.yaml").read_text() == ROLE_SOURCE.read_text()
    assert (files / "gatekeeper-rules.yaml").read_text() == RULES_SOURCE.read_text()
    assert (files / "dashboards" / "release-gatekeeper.json").read_text() == (
        DASHBOARD_SOURCE.read_text()
    )
    assert (files / "workflow-template.yaml").read_text() == gatekeeper_cli(
        "workflow", "render", "--template"
    )
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "chart_sync.py"), "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def _table_rows() -> dict[str, str]:
    rows: dict[str, str] = {}
    text = (CHART / "README.md").read_text()
    table = text.split("<!-- values-table:start -->")[1].split("<!-- values-table:end -->")[0]
    for line in table.strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        rows[cells[0].strip("`")] = cells[1].strip("`")
    return rows


def _leaves(values: Doc, listed: set[str], prefix: str = "") -> set[str]:
    found: set[str] = set()
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in listed:
            found |= _leaves(value, listed, f"{path}.")
        else:
            found.add(path)
    return found


def test_the_readme_values_table_lists_every_key_with_its_default() -> None:
    values: Doc = yaml.safe_load((CHART / "values.yaml").read_text())
    rows = _table_rows()
    assert _leaves(values, set(rows)) == set(rows)
    for key, default in rows.items():
        value: Any = values
        for part in key.split("."):
            value = value[part]
        assert json.loads(default) == value, key


# -- refusals --------------------------------------------------------------------------------


TOKEN = "gkt_0123456789abcdefghijklmnopqrstuvwxyz"
REFUSALS = {
    "sqlite with two replicas": (["store.type=sqlite"], "/replicaCount': maximum: got 2, want 1"),
    "argo with sqlite": (
        ["replicaCount=1", "store.type=sqlite", "executor.kind=argo"],
        "/store/type': value must be 'postgres'",
    ),
    "argo env Secret without a database URL": (
        ["executor.kind=argo"],
        "can only write GATEKEEPER_DB_URL from store.postgres.url",
    ),
    "both RBAC modes": (
        ["rbac.clusterWide=true", "rbac.targetNamespaces={shop}"],
        "give targetNamespaces or clusterWide, not both",
    ),
    "OIDC without issuer": (
        ["auth.oidc.enabled=true"],
        "give auth.oidc.issuer and auth.oidc.audience",
    ),
    "PostgreSQL without a URL": (
        ["store.postgres.existingSecret="],
        "give store.postgres.url or store.postgres.existingSecret",
    ),
    "an unknown key": (["replicas=3"], "additional properties 'replicas' not allowed"),
    "an unknown executor": (["executor.kind=remote"], "/executor/kind': value must be one of"),
    "an unknown lease": (["lease.kind=etcd"], "/lease/kind': value must be one of"),
    "an unknown role": (
        [
            "auth.tokens[0].principal=ci",
            "auth.tokens[0].roles={deployer}",
            f"auth.tokens[0].token={TOKEN}",
        ],
        "/auth/tokens/0/roles/0': value must be one of",
    ),
    "a short token": (
        ["auth.tokens[0].principal=ci", "auth.tokens[0].roles={ci}", "auth.tokens[0].token=gkt_x"],
        "/auth/tokens/0/token': 'gkt_x' does not match pattern",
    ),
    "a namespace that is no DNS label": (
        ["rbac.targetNamespaces={Shop_1}"],
        "/rbac/targetNamespaces/0': 'Shop_1' does not match pattern",
    ),
}


@pytest.mark.parametrize(("settings", "said"), list(REFUSALS.values()), ids=list(REFUSALS))
def test_settings_that_cannot_work_are_refused_with_what_to_change(
    helm: Helm, settings: list[str], said: str
) -> None:
    given = [arg for setting in settings for arg in ("--set", setting)]
    done = helm.run("template", RELEASE, str(CHART), *given, check=False)
    assert done.returncode != 0, done.stdout
    assert said in done.stderr, done.stderr
