"""Plan to Argo Workflow: one workflow per release, its pods from the shared WorkflowTemplate.

The workflow of a release: entrypoint ``release``, a DAG of two tasks side by side::

    release (dag)
    ├── steps   local steps template: the plan in order, one node per step
    │   │         s0-deploy        templateRef step       release=<id> step=0
    │   │         s1-verify        templateRef step       release=<id> step=1
    │   │         s2-approve-shift-5-suspend  templateRef approval  step=2  (resume = approve)
    │   │         s2-approve-shift-5          templateRef step      step=2  (checks the store)
    │   │         ...
    │   └── hook exit: templateRef rollback, when tasks["steps"].status != "Succeeded"
    └── guard   templateRef guard: the abort guard, for the whole release
    onExit: exit-handler → rollback, when {{workflow.status}} != Succeeded

How it ends:

* promoted: the last step promotes, the guard sees the release leave its running phases
  and ends (exit 0), the DAG succeeds; the exit handler skips its rollback.
* a step fails (a gate failed, a person stopped an approval's suspend node, an error): the
  ``steps`` task's exit hook rolls back at once; the release has ended, so the guard ends;
  the DAG fails.
* the guard fails: it records the rollback decision and fails its node; the step running
  then ends on the same signal, or the next step refuses a release that is rolling back;
  the ``steps`` task fails and its exit hook rolls back. Argo's DAG waits for its running
  nodes, so while an approval is suspended that wait lasts until the node is resumed or
  stopped (the Argo executor stops it once the release is rolling back), the workflow is
  stopped, or the deadline passes.
* the deadline passes, or the workflow is stopped: the exit handler rolls back.

A rollback is idempotent (`gatekeeper step run RELEASE rollback` on an ended release
changes nothing), so the hook and the exit handler never undo each other.
"""

from __future__ import annotations

import json
from typing import Any

from hera.workflows.models import (
    Arguments,
    DAGTask,
    DAGTemplate,
    LifecycleHook,
    ObjectMeta,
    ParallelSteps,
    Parameter,
    Template,
    TemplateRef,
    Workflow,
    WorkflowSpec,
    WorkflowStep,
)

from gatekeeper.domain.errors import InvalidInput
from gatekeeper.domain.plan import Plan, WaitForApproval
from gatekeeper.domain.release import ReleaseSpec

from .deadline import active_deadline_seconds
from .names import label_value, node_name, workflow_name
from .settings import WorkflowSettings
from .templates import (
    API_VERSION,
    APPROVAL,
    GUARD,
    MANAGED_BY,
    RELEASE_PARAM,
    ROLLBACK,
    STEP_PARAM,
    compile_template,
    dump,
    step_template_name,
)

__all__ = ["compile_template", "compile_workflow"]

ENTRYPOINT = "release"
STEPS = "steps"
EXIT_HANDLER = "exit-handler"
EXIT_HOOK = "exit"  # Argo's name for the hook that runs when its task ends
SUSPEND_SUFFIX = "-suspend"  # an approval's suspend node: `s2-approve-shift-5-suspend`
PREFIX = "gatekeeper.dev/"
STEPS_NOT_SUCCEEDED = f'tasks["{STEPS}"].status != "Succeeded"'
WORKFLOW_NOT_SUCCEEDED = "{{workflow.status}} != Succeeded"


class _Refs:
    """TemplateRefs into the shared WorkflowTemplate, with one release's arguments."""

    def __init__(self, settings: WorkflowSettings, release: str) -> None:
        self.template_name = settings.template_name
        self.release = release

    def ref(self, template: str) -> TemplateRef:
        return TemplateRef(name=self.template_name, template=template)

    def args(self, step: int | None = None) -> Arguments:
        params = [Parameter(name=RELEASE_PARAM, value=self.release)]
        if step is not None:
            params.append(Parameter(name=STEP_PARAM, value=str(step)))
        return Arguments(parameters=params)

    def step(self, name: str, template: str, index: int | None = None) -> ParallelSteps:
        """A steps entry that runs one node alone, after the entry before it."""
        node = WorkflowStep(name=name, template_ref=self.ref(template), arguments=self.args(index))
        return ParallelSteps([node])


def compile_workflow(plan: Plan, spec: ReleaseSpec, settings: WorkflowSettings) -> dict[str, Any]:
    """The Workflow of one release, as plain data (see the module docstring)."""
    if plan.release != spec.release_id:
        raise InvalidInput(
            f"plan of release {plan.release!r} does not belong to release {spec.release_id!r}"
        )
    refs = _Refs(settings, spec.release_id)
    workflow = Workflow(
        api_version=API_VERSION,
        kind="Workflow",
        metadata=ObjectMeta(
            name=workflow_name(spec.release_id),
            namespace=settings.namespace,
            labels=workflow_labels(plan, spec, settings),
            annotations=workflow_annotations(spec, settings),
        ),
        spec=WorkflowSpec(
            entrypoint=ENTRYPOINT,
            on_exit=EXIT_HANDLER,
            active_deadline_seconds=active_deadline_seconds(plan, spec),
            service_account_name=settings.service_account,
            pod_spec_patch=env_patch(settings),
            templates=[_release(refs), _steps(plan, refs), _exit_handler(refs)],
        ),
    )
    return dump(workflow)


def env_patch(settings: WorkflowSettings) -> str | None:
    """The step pods' env (``settings.env``) as the workflow's podSpecPatch on their main
    container: it travels with each release's workflow, so the shared WorkflowTemplate never
    changes with it (a template updated per release would race the controller's cache of it,
    and one release's pods could start with another's store or kubeconfig)."""
    if not settings.env:
        return None
    env = [{"name": k, "value": v} for k, v in sorted(settings.env.items())]
    return json.dumps({"containers": [{"name": "main", "env": env}]}, sort_keys=True)


def _release(refs: _Refs) -> Template:
    """The entrypoint: the steps and the guard side by side."""
    rollback_now = LifecycleHook(
        expression=STEPS_NOT_SUCCEEDED, template_ref=refs.ref(ROLLBACK), arguments=refs.args()
    )
    return Template(
        name=ENTRYPOINT,
        dag=DAGTemplate(
            tasks=[
                DAGTask(name=STEPS, template=STEPS, hooks={EXIT_HOOK: rollback_now}),
                DAGTask(name=GUARD, template_ref=refs.ref(GUARD), arguments=refs.args()),
            ]
        ),
    )


def _steps(plan: Plan, refs: _Refs) -> Template:
    """The plan's steps in order; an approval is its suspend, then its step."""
    sequence: list[ParallelSteps] = []
    for index, step in enumerate(plan.steps):
        if isinstance(step, WaitForApproval):
            suspend = node_name(index, step.name, SUSPEND_SUFFIX)
            sequence.append(refs.step(suspend, APPROVAL, index))
        template = step_template_name(step.kind)
        sequence.append(refs.step(node_name(index, step.name), template, index))
    return Template(name=STEPS, steps=sequence)


def _exit_handler(refs: _Refs) -> Template:
    """Runs when the workflow ends: a rollback unless it succeeded."""
    rollback = WorkflowStep(
        name=ROLLBACK,
        template_ref=refs.ref(ROLLBACK),
        arguments=refs.args(),
        when=WORKFLOW_NOT_SUCCEEDED,
    )
    return Template(name=EXIT_HANDLER, steps=[ParallelSteps([rollback])])


def workflow_labels(plan: Plan, spec: ReleaseSpec, settings: WorkflowSettings) -> dict[str, str]:
    """Selectable labels: values made valid (names.label_value), raw values in annotations."""
    ours = {
        "app": spec.app,
        "environment": spec.environment,
        "version": spec.version,
        "release-id": spec.release_id,
        "strategy": plan.strategy,
    }
    return {
        **settings.labels,
        **{PREFIX + k: label_value(v) for k, v in ours.items()},
        **MANAGED_BY,
    }


def workflow_annotations(spec: ReleaseSpec, settings: WorkflowSettings) -> dict[str, str]:
    """The raw values behind the labels, which a label may have had to change."""
    raw = {
        "app": spec.app,
        "environment": spec.environment,
        "version": spec.version,
        "release-id": spec.release_id,
    }
    return {**settings.annotations, **{PREFIX + k: v for k, v in raw.items()}}
