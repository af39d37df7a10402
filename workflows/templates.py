"""The WorkflowTemplate shipped once per namespace: the pods every release workflow runs.

    step-<kind>  gatekeeper step run RELEASE STEP    one plan step of that kind (inputs:
                                                  release, step): step-deploy, step-verify,
                                                  step-shift, step-batch, step-analyze,
                                                  step-approval, step-promote
    approval     suspend                          resume = approve; stop = reject (inputs:
                                                  release, step; step-approval then checks
                                                  the approval in the store)
    guard        gatekeeper step run RELEASE guard     the abort guard, for the whole release
    rollback     gatekeeper step run RELEASE rollback  the plan's rollback steps

One container template per step kind: Argo's UI and `argo get` show what each node does, and
a kind's template can be tuned on its own (resources, deadlines) in the shipped template.

Each container retries only the exit code of a temporary error (``Exit.TEMPORARY``), with
backoff; every other code is a decision or a refusal, and a retry would not change it.
"""

from __future__ import annotations

from typing import Any

from hera.workflows.models import (
    Backoff,
    Container,
    EnvFromSource,
    Inputs,
    IntOrString,
    ObjectMeta,
    Parameter,
    RetryStrategy,
    SecretEnvSource,
    SuspendTemplate,
    Template,
    WorkflowSpec,
    WorkflowTemplate,
)
from pydantic import BaseModel

from gatekeeper.domain.exits import Exit

from .settings import WorkflowSettings

API_VERSION = "argoproj.io/v1alpha1"
MANAGED_BY = {"app.kubernetes.io/managed-by": "gatekeeper"}

# Template names, and the words `gatekeeper step run` takes besides a step index.
STEP = "step"  # the prefix of the plan steps' templates: step-<kind>
STEP_KINDS = ("deploy", "verify", "shift", "batch", "analyze", "approval", "promote")
APPROVAL = "approval"
GUARD = "guard"
ROLLBACK = "rollback"
RELEASE_PARAM = "release"
STEP_PARAM = "step"

RETRY_EXPRESSION = f"asInt(lastRetry.exitCode) == {int(Exit.TEMPORARY)}"


def dump(model: BaseModel) -> dict[str, Any]:
    """A hera model as plain data for YAML or the API: aliases, no unset fields."""
    data: dict[str, Any] = model.model_dump(by_alias=True, exclude_none=True, mode="json")
    return data


def retry_strategy(settings: WorkflowSettings, limit: int) -> RetryStrategy:
    """Retry a temporary error (exit 75) only, up to ``limit`` times, with backoff."""
    b = settings.retry_backoff
    return RetryStrategy(
        limit=IntOrString(str(limit)),  # IntOrString is a string in Argo's schema
        retry_policy="Always",  # exit codes are judged by the expression, not the phase
        expression=RETRY_EXPRESSION,
        backoff=Backoff(
            duration=b.duration,
            factor=IntOrString(str(b.factor)),
            cap=b.cap,
            max_duration=b.max_duration,
        ),
    )


def _inputs(*names: str) -> Inputs:
    return Inputs(parameters=[Parameter(name=n) for n in names])


def _container(settings: WorkflowSettings, step: str) -> Container:
    """`gatekeeper step run RELEASE <step>` in the gatekeeper's image. Its env comes from the
    Secret (envFrom) and from each release's workflow (``settings.env`` as its podSpecPatch,
    compiler.env_patch), never from this shared template."""
    env_from = (
        [EnvFromSource(secret_ref=SecretEnvSource(name=settings.env_from_secret))]
        if settings.env_from_secret
        else None
    )
    return Container(
        image=settings.image,
        image_pull_policy=settings.image_pull_policy,
        command=["gatekeeper"],
        args=["step", "run", f"{{{{inputs.parameters.{RELEASE_PARAM}}}}}", step],
        env_from=env_from,
        # The step's last line ("gate failed: abort: error ratio 7.8% > 5% ...") becomes the
        # pod's terminated message, which Argo shows as the failed node's message.
        termination_message_policy="FallbackToLogsOnError",
    )


def step_template_name(kind: str) -> str:
    """The template that runs plan steps of ``kind``: ``step-shift``."""
    if kind not in STEP_KINDS:
        raise ValueError(f"step kind {kind!r} has no template; kinds: {', '.join(STEP_KINDS)}")
    return f"{STEP}-{kind}"


def step_templates(settings: WorkflowSettings) -> list[Template]:
    """The templates, in the order of the module docstring."""
    step_arg = f"{{{{inputs.parameters.{STEP_PARAM}}}}}"
    return [
        *(
            Template(
                name=step_template_name(kind),
                inputs=_inputs(RELEASE_PARAM, STEP_PARAM),
                container=_container(settings, step_arg),
                retry_strategy=retry_strategy(settings, settings.retry_limit),
            )
            for kind in STEP_KINDS
        ),
        Template(
            name=APPROVAL,
            inputs=_inputs(RELEASE_PARAM, STEP_PARAM),
            suspend=SuspendTemplate(),
        ),
        Template(
            name=GUARD,
            inputs=_inputs(RELEASE_PARAM),
            container=_container(settings, GUARD),
            retry_strategy=retry_strategy(settings, settings.rollback_retry_limit),
        ),
        Template(
            name=ROLLBACK,
            inputs=_inputs(RELEASE_PARAM),
            container=_container(settings, ROLLBACK),
            retry_strategy=retry_strategy(settings, settings.rollback_retry_limit),
        ),
    ]


def compile_template(settings: WorkflowSettings) -> dict[str, Any]:
    """The WorkflowTemplate named ``settings.template_name``, as plain data."""
    template = WorkflowTemplate(
        api_version=API_VERSION,
        kind="WorkflowTemplate",
        metadata=ObjectMeta(
            name=settings.template_name,
            namespace=settings.namespace,
            labels={**settings.labels, **MANAGED_BY},
            annotations=dict(settings.annotations) or None,
        ),
        spec=WorkflowSpec(
            service_account_name=settings.service_account,
            templates=step_templates(settings),
        ),
    )
    return dump(template)
