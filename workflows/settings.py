"""Where and how release workflows run on Argo: namespace, image, service account, env, retries."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gatekeeper.domain.errors import InvalidInput
from gatekeeper.domain.release import LABEL_KEY, NAME, PATTERN_WORDS
from gatekeeper.domain.validation import error_text

from .names import LABEL_VALUE

DEFAULT_IMAGE = "ghcr.io/release-gatekeeper/gatekeeper:0.1.0"
# An Argo duration: a number of seconds, or Go's form ("5s", "2m", "1h30m").
ARGO_DURATION = r"^(\d+|(\d+(\.\d+)?(ms|s|m|h))+)$"
# A Kubernetes Secret or ServiceAccount name: a DNS subdomain.
SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"

_WORDS = {
    **PATTERN_WORDS,
    ARGO_DURATION: "an Argo duration: seconds, or a number with ms, s, m or h, "
    'such as "5s" or "2m"',
    SUBDOMAIN: "a Kubernetes object name: lower-case letters, digits, '-' and '.'",
}


class RetryBackoff(BaseModel):
    """Argo's backoff between attempts: ``duration`` * ``factor`` ** retry, each wait at most
    ``cap``.

    ``max_duration`` is unset by default on purpose: Argo counts it from the start of a node's
    first attempt and makes it the deadline of every retried pod, so a value shorter than the
    longest step (an analysis, an approval, the guard for the whole release) would refuse to
    retry that step, or kill its retry half-way.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    duration: str = Field(default="5s", pattern=ARGO_DURATION)
    factor: int = Field(default=2, ge=1, le=10)
    cap: str | None = Field(default="2m", pattern=ARGO_DURATION)
    max_duration: str | None = Field(default=None, pattern=ARGO_DURATION)


class WorkflowSettings(BaseModel):
    """How a release's workflow and the shared WorkflowTemplate are rendered."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = Field(default="default", pattern=NAME)
    template_name: str = Field(default="gatekeeper-release-steps", pattern=NAME)
    image: str = Field(default=DEFAULT_IMAGE, min_length=1)
    image_pull_policy: str | None = Field(default=None, pattern=r"^(Always|IfNotPresent|Never)$")
    service_account: str = Field(default="gatekeeper-workflow", max_length=253, pattern=SUBDOMAIN)
    # e.g. GATEKEEPER_DB_URL, GATEKEEPER_PROMETHEUS_URL; a Secret suits the database URL better.
    env: dict[str, str] = Field(default_factory=dict)
    env_from_secret: str | None = Field(default=None, max_length=253, pattern=SUBDOMAIN)
    retry_limit: int = Field(default=3, ge=0, le=100)  # a plan step's retries of exit 75
    # The guard and the rollback retry longer: a guard that gives up fails the release, a
    # rollback that gives up leaves traffic on the candidate.
    rollback_retry_limit: int = Field(default=10, ge=0, le=100)
    retry_backoff: RetryBackoff = Field(default_factory=RetryBackoff)
    labels: dict[str, str] = Field(default_factory=dict)  # added to every rendered object
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.fullmatch(ENV_NAME, name):
                raise ValueError(
                    f"env {name!r}: not an environment variable name (letters, digits and '_', "
                    "not starting with a digit)"
                )
        return value

    @field_validator("labels", "annotations")
    @classmethod
    def _keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not re.fullmatch(LABEL_KEY, key):
                raise ValueError(f"key {key!r} is not {PATTERN_WORDS[LABEL_KEY]}")
        return value

    @field_validator("labels")
    @classmethod
    def _label_values(cls, value: dict[str, str]) -> dict[str, str]:
        for key, v in value.items():
            if not re.fullmatch(LABEL_VALUE, v):
                raise ValueError(
                    f"label {key}={v!r} is not a label value: at most 63 letters, digits, "
                    "'-', '_' and '.', starting and ending with a letter or digit"
                )
        return value


def workflow_settings(
    data: dict[str, Any], *, source: str = "workflow settings"
) -> WorkflowSettings:
    """Settings from plain data; InvalidInput names every bad field and what it allows."""
    try:
        return WorkflowSettings.model_validate(data)
    except ValidationError as e:
        raise InvalidInput(error_text(e, source, _WORDS)) from e
