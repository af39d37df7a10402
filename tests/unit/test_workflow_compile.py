"""Plans compiled into Argo Workflows: Argo's JSON schema, the shape, names, labels, goldens.

Every rendered document is validated against Argo's own JSON schema (``../shared/argo/
schema.json`` beside the repository) and compared with its golden file under
``tests/golden/workflows/``. After a deliberate change to the compiler, regenerate the
goldens with ``GATEKEEPER_REGEN_GOLDEN=1 .venv/bin/pytest tests/unit/test_workflow_compile.py``
and review the diff; CI never regenerates (the flag is refused when ``CI`` is set).
"""

from __future__ import annotations

import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from jsonschema import Draft202012Validator
from typer.testing import CliRunner

from gatekeeper.cli.main import app
from gatekeeper.domain.errors import InvalidInput
from gatekeeper.domain.exits import Exit
from gatekeeper.domain.plan import Step
from gatekeeper.domain.release import ReleaseSpec, parse_release
from gatekeeper.engine import single_step
from gatekeeper.engine.specs import validate
from gatekeeper.engine.workflow_render import to_yaml
from workflows.compiler import (
    STEPS_NOT_SUCCEEDED,
    SUSPEND_SUFFIX,
    WORKFLOW_NOT_SUCCEEDED,
    compile_template,
    compile_workflow,
)
from workflows.deadline import STEP_ALLOWANCE_S
from workflows.names import DNS_NAME, LABEL_VALUE, NODE_NAME
from workflows.settings import WorkflowSettings, workflow_settings
from workflows.templates import GUARD, RETRY_EXPRESSION, ROLLBACK, STEP_KINDS

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO.parent / "shared" / "argo" / "schema.json"
GOLDEN = REPO / "tests" / "golden" / "workflows"
REGEN = "GATEKEEPER_REGEN_GOLDEN"
DEFINITION = "io.argoproj.workflow.v1alpha1."


def release(strategy: dict[str, Any], router: str = "gateway-api", **extra: Any) -> dict[str, Any]:
    target: dict[str, Any] = {"type": "kubernetes", "namespace": "shop", "router": router}
    if router == "replica-ratio":
        target["replicas"] = 4
    data: dict[str, Any] = {
        "app": "shop",
        "environment": "production",
        "version": "2.1.0",
        "image": "registry.example/shop:2.1.0",
        "stable": {"version": "2.0.0", "image": "registry.example/shop:2.0.0"},
        "strategy": strategy,
        "target": target,
    }
    data.update(extra)
    return data


SPECS: dict[str, dict[str, Any]] = {
    "canary": release(
        {"type": "canary", "steps": [10, 50, 100], "analysis": "5m"}, approvals=["promote"]
    ),
    "blue-green": release(
        {"type": "blue-green", "bake": "10m", "scale_down_delay": "5m"}, router="service-selector"
    ),
    "rolling": release(
        {"type": "rolling", "batches": [25, 50, 100], "analysis": "2m"}, router="replica-ratio"
    ),
    "expedited": release(
        {"type": "canary"},
        version="2.0.1-hotfix1",
        expedited=True,
        expedited_reason="checkout 500s on coupon codes (INC-4711)",
    ),
}


def spec_of(name: str, **change: Any) -> ReleaseSpec:
    return parse_release({**SPECS[name], **change})


def workflow(name: str, settings: WorkflowSettings | None = None, **change: Any) -> dict[str, Any]:
    spec = spec_of(name, **change)
    plan, _ = validate(spec)
    return compile_workflow(plan, spec, settings or WorkflowSettings())


def template(doc: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [t for t in doc["spec"]["templates"] if t["name"] == name]
    assert len(found) == 1, (name, [t["name"] for t in doc["spec"]["templates"]])
    return found[0]


def steps_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The steps template's entries, each a group of one step."""
    groups = template(doc, "steps")["steps"]
    assert all(len(g) == 1 for g in groups), groups
    return [g[0] for g in groups]


@cache
def _validator(kind: str) -> Draft202012Validator:
    if not SCHEMA.is_file():
        pytest.fail(f"Argo's JSON schema is missing: {SCHEMA} (the reference data beside the repo)")
    schema = json.loads(SCHEMA.read_text())
    return Draft202012Validator(
        {"$ref": f"#/definitions/{DEFINITION}{kind}", "definitions": schema["definitions"]}
    )


def schema_errors(doc: dict[str, Any]) -> list[str]:
    errors = _validator(doc["kind"]).iter_errors(doc)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


# -- Argo's schema and the goldens ------------------------------------------------------------


RENDERS = [*SPECS, "template"]


def render(name: str) -> dict[str, Any]:
    return compile_template(WorkflowSettings()) if name == "template" else workflow(name)


@pytest.mark.parametrize("name", RENDERS)
def test_every_rendered_document_validates_against_argos_json_schema(name: str) -> None:
    doc = render(name)
    assert schema_errors(doc) == []
    assert doc["apiVersion"] == "argoproj.io/v1alpha1"
    assert doc["kind"] == ("WorkflowTemplate" if name == "template" else "Workflow")


def test_the_schema_check_catches_a_limit_given_as_a_number() -> None:
    doc = render("template")
    doc["spec"]["templates"][0]["retryStrategy"]["limit"] = 3
    assert any("retryStrategy.limit" in e for e in schema_errors(doc))


@pytest.mark.parametrize("name", RENDERS)
def test_the_rendering_matches_its_golden_file(name: str) -> None:
    text = to_yaml(render(name))
    path = GOLDEN / f"{name}.yaml"
    if os.environ.get(REGEN) == "1":
        if os.environ.get("CI"):
            pytest.fail(f"{REGEN} is refused in CI: goldens are regenerated by hand and reviewed")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"no golden {path}; create it with {REGEN}=1"
    assert text == path.read_text(), f"{path} differs; after a deliberate change: {REGEN}=1"


# -- the step templates -------------------------------------------------------------------------


def test_every_step_kind_of_a_plan_has_its_own_template() -> None:
    doc = compile_template(WorkflowSettings())
    kinds = {cls.model_fields["kind"].default for cls in get_args(get_args(Step)[0])}
    kinds.discard("rollback")  # the plan's rollback steps run in the `rollback` template
    assert set(STEP_KINDS) == kinds
    names = [t["name"] for t in doc["spec"]["templates"]]
    assert names == [f"step-{k}" for k in STEP_KINDS] + ["approval", "guard", "rollback"]


@pytest.mark.parametrize("kind", STEP_KINDS)
def test_a_step_template_runs_one_step_and_retries_only_a_temporary_exit(kind: str) -> None:
    doc = compile_template(WorkflowSettings())
    assert doc["metadata"]["name"] == "gatekeeper-release-steps"
    step = template(doc, f"step-{kind}")
    assert [p["name"] for p in step["inputs"]["parameters"]] == ["release", "step"]
    container = step["container"]
    assert container["command"] == ["gatekeeper"]
    assert container["args"] == [
        "step",
        "run",
        "{{inputs.parameters.release}}",
        "{{inputs.parameters.step}}",
    ]
    retry = step["retryStrategy"]
    assert retry["expression"] == f"asInt(lastRetry.exitCode) == {int(Exit.TEMPORARY)}"
    assert retry["expression"] == RETRY_EXPRESSION == "asInt(lastRetry.exitCode) == 75"
    assert retry["limit"] == "3" and isinstance(retry["limit"], str)
    assert retry["retryPolicy"] == "Always"
    assert retry["backoff"] == {"cap": "2m", "duration": "5s", "factor": "2"}


def test_the_guard_and_the_rollback_run_their_words_of_step_run_and_retry_longer() -> None:
    doc = compile_template(WorkflowSettings(rollback_retry_limit=7))
    for name, word in ((GUARD, single_step.GUARD), (ROLLBACK, single_step.ROLLBACK)):
        t = template(doc, name)
        assert t["container"]["args"] == ["step", "run", "{{inputs.parameters.release}}", word]
        assert t["retryStrategy"]["limit"] == "7"
        assert t["retryStrategy"]["expression"] == RETRY_EXPRESSION


def test_an_approval_template_is_a_bare_suspend() -> None:
    approval = template(compile_template(WorkflowSettings()), "approval")
    assert approval["suspend"] == {}
    assert [p["name"] for p in approval["inputs"]["parameters"]] == ["release", "step"]
    assert "container" not in approval and "retryStrategy" not in approval


def test_the_env_travels_with_each_workflow_as_its_pod_spec_patch() -> None:
    settings = WorkflowSettings(env={"GATEKEEPER_DB_URL": "sqlite:///x.db", "A": "1"})
    doc = workflow("canary", settings)
    assert json.loads(doc["spec"]["podSpecPatch"]) == {
        "containers": [
            {
                "name": "main",
                "env": [
                    {"name": "A", "value": "1"},
                    {"name": "GATEKEEPER_DB_URL", "value": "sqlite:///x.db"},
                ],
            }
        ]
    }
    assert "podSpecPatch" not in workflow("canary")["spec"]
    # and two releases with different env share one template, unchanged
    assert compile_template(settings) == compile_template(WorkflowSettings())


def test_settings_reach_every_container() -> None:
    settings = WorkflowSettings(
        namespace="delivery",
        image="registry.example/gatekeeper:9",
        image_pull_policy="IfNotPresent",
        service_account="release-bot",
        env={"GATEKEEPER_PROMETHEUS_URL": "http://prometheus:9090", "A": "1"},
        env_from_secret="gatekeeper-store",
        labels={"team": "payments"},
    )
    doc = compile_template(settings)
    assert doc["metadata"]["namespace"] == "delivery"
    assert doc["metadata"]["labels"] == {
        "team": "payments",
        "app.kubernetes.io/managed-by": "gatekeeper",
    }
    assert doc["spec"]["serviceAccountName"] == "release-bot"
    containers = [t["container"] for t in doc["spec"]["templates"] if "container" in t]
    assert len(containers) == len(STEP_KINDS) + 2  # a step template per kind, guard, rollback
    for c in containers:
        assert c["image"] == "registry.example/gatekeeper:9"
        assert c["imagePullPolicy"] == "IfNotPresent"
        assert "env" not in c  # the shared template never holds one release's env
        assert c["envFrom"] == [{"secretRef": {"name": "gatekeeper-store"}}]
    wf = workflow("canary", settings)
    assert wf["metadata"]["namespace"] == "delivery"
    assert wf["spec"]["serviceAccountName"] == "release-bot"
    assert wf["metadata"]["labels"]["team"] == "payments"


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("namespace", "Shop_NS", "namespace: 'Shop_NS' is not a lower-case DNS label"),
        ("env", {"1BAD": "x"}, "env '1BAD': not an environment variable name"),
        ("labels", {"team": "a b"}, "label team='a b' is not a label value"),
        ("retry_limit", -1, "retry_limit: Input should be greater than or equal to 0"),
        ("image_pull_policy", "Sometimes", "image_pull_policy: 'Sometimes' does not match"),
    ],
)
def test_bad_settings_are_refused_naming_the_field_and_the_value(
    field: str, value: Any, said: str
) -> None:
    with pytest.raises(InvalidInput) as e:
        workflow_settings({field: value})
    assert said in str(e.value)


# -- the workflow of a release ------------------------------------------------------------------


def test_the_guard_runs_beside_the_steps_from_the_entrypoint() -> None:
    doc = workflow("canary")
    assert doc["spec"]["entrypoint"] == "release"
    tasks = template(doc, "release")["dag"]["tasks"]
    assert [t["name"] for t in tasks] == ["steps", "guard"]
    steps, guard = tasks
    assert steps["template"] == "steps"
    assert guard["templateRef"] == {"name": "gatekeeper-release-steps", "template": "guard"}
    assert guard["arguments"]["parameters"] == [
        {"name": "release", "value": "shop-production-2.1.0"}
    ]
    # side by side: neither waits for the other
    assert not {"depends", "dependencies"} & (set(steps) | set(guard))


def test_failed_steps_roll_back_at_once_and_a_failed_workflow_at_its_exit() -> None:
    doc = workflow("canary")
    steps = template(doc, "release")["dag"]["tasks"][0]
    hook = steps["hooks"]["exit"]
    assert hook["expression"] == STEPS_NOT_SUCCEEDED == 'tasks["steps"].status != "Succeeded"'
    assert hook["templateRef"]["template"] == "rollback"
    assert doc["spec"]["onExit"] == "exit-handler"
    [[rollback]] = template(doc, "exit-handler")["steps"]
    assert rollback["name"] == "rollback"
    assert rollback["templateRef"] == {"name": "gatekeeper-release-steps", "template": "rollback"}
    assert rollback["when"] == WORKFLOW_NOT_SUCCEEDED == "{{workflow.status}} != Succeeded"


@pytest.mark.parametrize("name", SPECS)
def test_each_plan_step_is_a_node_in_order_and_an_approval_is_a_suspend_then_its_step(
    name: str,
) -> None:
    spec = spec_of(name)
    plan, _ = validate(spec)
    expected: list[tuple[str, str, str]] = []
    for index, step in enumerate(plan.steps):
        if step.kind == "approval":
            expected.append((f"s{index}-{step.name}{SUSPEND_SUFFIX}", "approval", str(index)))
        expected.append((f"s{index}-{step.name}", f"step-{step.kind}", str(index)))
    got = [
        (
            s["name"],
            s["templateRef"]["template"],
            {p["name"]: p["value"] for p in s["arguments"]["parameters"]}["step"],
        )
        for s in steps_of(workflow(name))
    ]
    assert got == expected
    for node, _, _ in got:
        assert re.fullmatch(NODE_NAME, node) and len(node) <= 63, node


def test_step_nodes_read_as_index_and_step_name() -> None:
    names = [s["name"] for s in steps_of(workflow("canary"))]
    assert names == [
        "s0-deploy",
        "s1-verify",
        "s2-shift-10",
        "s3-analyze-10",
        "s4-shift-50",
        "s5-analyze-50",
        "s6-shift-100",
        "s7-analyze-100",
        "s8-approve-promote-suspend",
        "s8-approve-promote",
        "s9-promote",
    ]
    expedited = [s["name"] for s in steps_of(workflow("expedited"))]
    assert expedited[:3] == ["s0-approve-expedited-suspend", "s0-approve-expedited", "s1-deploy"]


def test_the_deadline_is_the_plans_waits_holds_and_a_step_allowance() -> None:
    # canary 10/50/100 with 5m analyses and an approval before promote; hold_timeout 1h:
    # waits 3 x 5m; holds: 3 shifts, the approval and the promotion; 10 steps
    doc = workflow("canary")
    expected = 3 * 300 + 5 * 3600 + 10 * STEP_ALLOWANCE_S
    assert doc["spec"]["activeDeadlineSeconds"] == expected
    # time_scale compresses the waits and the holds, never the real-time allowance
    scaled = workflow("canary", time_scale=10)
    assert scaled["spec"]["activeDeadlineSeconds"] == 3 * 30 + 5 * 360 + 10 * STEP_ALLOWANCE_S
    # a Kubernetes readiness wait longer than the allowance is allowed for every step
    target = {**SPECS["canary"]["target"], "progress_deadline": "15m"}
    slow = workflow("canary", target=target)
    assert slow["spec"]["activeDeadlineSeconds"] == 3 * 300 + 5 * 3600 + 10 * 900


def test_labels_name_the_release_and_the_managing_tool() -> None:
    meta = workflow("canary")["metadata"]
    assert meta["name"] == "shop-production-2.1.0"
    assert meta["labels"] == {
        "gatekeeper.dev/app": "shop",
        "gatekeeper.dev/environment": "production",
        "gatekeeper.dev/version": "2.1.0",
        "gatekeeper.dev/release-id": "shop-production-2.1.0",
        "gatekeeper.dev/strategy": "canary",
        "app.kubernetes.io/managed-by": "gatekeeper",
    }
    assert meta["annotations"]["gatekeeper.dev/version"] == "2.1.0"


ODD_VERSIONS = [
    "V2.1.0",
    "2.1.0+build.7",
    "2.1.0-",
    "2.1.0_rc+",
    "R" + "1234567890" * 12 + "abcdefg",  # 128 characters, the longest a version may be
]


@pytest.mark.parametrize("version", ODD_VERSIONS)
def test_odd_versions_give_valid_names_and_label_values_with_raw_values_annotated(
    version: str,
) -> None:
    doc = workflow("canary", version=version)
    meta = doc["metadata"]
    assert re.fullmatch(DNS_NAME, meta["name"]) and len(meta["name"]) <= 63, meta["name"]
    for key, value in meta["labels"].items():
        assert re.fullmatch(LABEL_VALUE, value), (key, value)
    assert meta["annotations"]["gatekeeper.dev/version"] == version
    assert meta["annotations"]["gatekeeper.dev/release-id"] == f"shop-production-{version}"
    # the same release always gets the same name: a second submit finds the first
    assert workflow("canary", version=version)["metadata"] == meta
    assert schema_errors(doc) == []


def test_names_that_had_to_change_stay_apart() -> None:
    upper = workflow("canary", version="V2")["metadata"]
    lower = workflow("canary", version="v2")["metadata"]
    assert lower["name"] == "shop-production-v2"
    assert upper["name"] != lower["name"] and upper["name"].startswith("shop-production-v2-")
    assert upper["labels"]["gatekeeper.dev/version"] == "V2"  # valid as it is: unchanged
    plus, under = (
        workflow("canary", version=v)["metadata"]["labels"]["gatekeeper.dev/version"]
        for v in ("2.1+1", "2.1_1")
    )
    assert plus != under
    long_a, long_b = (
        workflow("canary", version="v" + "9" * 100 + tail)["metadata"]["name"]
        for tail in ("a", "b")
    )
    assert long_a != long_b and len(long_a) == len(long_b) == 63


def test_a_plan_of_another_release_is_refused() -> None:
    spec = spec_of("canary")
    plan, _ = validate(spec_of("canary", version="9.9.9"))
    with pytest.raises(InvalidInput, match="does not belong to release 'shop-production-2.1.0'"):
        compile_workflow(plan, spec, WorkflowSettings())


# -- gatekeeper workflow render -----------------------------------------------------------------


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, ["workflow", "render", *args], env={"COLUMNS": "200"})


def test_render_prints_the_workflow_of_a_release_file_as_its_golden(tmp_path: Path) -> None:
    path = tmp_path / "canary.yaml"
    path.write_text(yaml.safe_dump(SPECS["canary"]))
    result = cli(str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout == (GOLDEN / "canary.yaml").read_text()


def test_render_takes_the_namespace_image_service_account_and_env(tmp_path: Path) -> None:
    path = tmp_path / "canary.yaml"
    path.write_text(yaml.safe_dump(SPECS["canary"]))
    result = cli(
        str(path),
        "--namespace",
        "delivery",
        "--image",
        "registry.example/gatekeeper:9",
        "--service-account",
        "release-bot",
        "--env",
        "GATEKEEPER_PROMETHEUS_URL=http://prometheus:9090",
        "--env-from-secret",
        "gatekeeper-store",
    )
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(result.stdout)
    assert doc["metadata"]["namespace"] == "delivery"
    assert doc["spec"]["serviceAccountName"] == "release-bot"
    assert schema_errors(doc) == []
    template_doc = yaml.safe_load(
        cli("--template", "--image", "registry.example/gatekeeper:9").stdout
    )
    assert template_doc["kind"] == "WorkflowTemplate"
    assert {
        t["container"]["image"] for t in template_doc["spec"]["templates"] if "container" in t
    } == {"registry.example/gatekeeper:9"}


def test_render_template_prints_the_workflow_template() -> None:
    result = cli("--template")
    assert result.exit_code == 0, result.output
    assert result.stdout == (GOLDEN / "template.yaml").read_text()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["{bad}"], "strategy"),
        (["{missing}"], "No such file"),
        ([], "RELEASE: give a release spec file, or --template"),
        (["{good}", "--namespace", "Not_A_Namespace"], "namespace: 'Not_A_Namespace'"),
        (["{good}", "--env", "NOVALUE"], "--env 'NOVALUE': use NAME=VALUE"),
        (["--template", "{bad}"], "strategy"),
    ],
)
def test_render_refuses_bad_input_with_exit_2_and_says_why(
    tmp_path: Path, args: list[str], said: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**SPECS["canary"], "strategy": {"type": "linear"}}))
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(SPECS["canary"]))
    paths = {"bad": str(bad), "good": str(good), "missing": str(tmp_path / "missing.yaml")}
    result = cli(*(a.format(**paths) for a in args))
    assert result.exit_code == Exit.INVALID, result.output
    assert "invalid input:" in result.stderr
    assert said in result.stderr
    assert result.stdout == ""
