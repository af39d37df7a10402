"""`gatekeeper workflow render`: a release spec compiled into its Argo Workflow, as YAML.

The spec is read and checked as `gatekeeper plan` does (the file, its gates, the plan a
router can carry out); nothing is written or started.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from workflows.compiler import compile_template, compile_workflow
from workflows.settings import WorkflowSettings, workflow_settings

from .specs import load_release_file, validate


@dataclass(frozen=True)
class RenderOptions:
    """Overrides of the workflow settings; None keeps the default."""

    namespace: str | None = None
    image: str | None = None
    service_account: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    env_from_secret: str | None = None

    def settings(self) -> WorkflowSettings:
        given: dict[str, Any] = {
            "namespace": self.namespace,
            "image": self.image,
            "service_account": self.service_account,
            "env": dict(self.env) or None,
            "env_from_secret": self.env_from_secret,
        }
        return workflow_settings(
            {k: v for k, v in given.items() if v is not None}, source="workflow render"
        )


def render_workflow(release_file: Path, options: RenderOptions) -> str:
    """The Workflow of the release in ``release_file``, as YAML (InvalidInput when bad)."""
    settings = options.settings()
    spec = load_release_file(release_file)
    plan, _ = validate(spec, release_file.parent)
    return to_yaml(compile_workflow(plan, spec, settings))


def render_template(options: RenderOptions, release_file: Path | None = None) -> str:
    """The WorkflowTemplate every release workflow refers to, as YAML; a release file given
    is checked all the same, so a bad spec is refused either way."""
    settings = options.settings()
    if release_file is not None:
        validate(load_release_file(release_file), release_file.parent)
    return to_yaml(compile_template(settings))


def to_yaml(document: Mapping[str, Any]) -> str:
    """One YAML document, keys in the order the compiler wrote them."""
    return yaml.safe_dump(dict(document), sort_keys=False, default_flow_style=False)
