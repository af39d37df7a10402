"""The configuration of `gatekeeper serve`: one YAML file, every field checked by name.

    server:        {host: 127.0.0.1, port: 8080, public_url: null, threads: 4}
    store:         {url: null}                  # env GATEKEEPER_DB_URL wins
    prometheus:    {url: null}                  # env GATEKEEPER_PROMETHEUS_URL wins
    kubeconfig:    null
    executor:      {kind: local, argo: null}
    lease:         {kind: database, name: gatekeeper-controller, namespace: null,
                    duration: 15s, renew: 5s}
    controller:    {interval: 1s, targets: [kubernetes]}
    auth:          {tokens_file: null, oidc: null}
    policy:        {...}                        # gatekeeper.engine.policy_config
    notifications: {...}                        # gatekeeper.engine.notify

README ("gatekeeper serve: the configuration") documents each field.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gatekeeper.domain.durations import Duration, format_duration
from gatekeeper.domain.errors import InvalidInput
from gatekeeper.domain.policy import WORDS as POLICY_WORDS
from gatekeeper.domain.policy import PolicyConfig
from gatekeeper.domain.release import NAME
from gatekeeper.domain.validation import error_text

from ..notify.config import NotifyConfig

URL = r"^https?://\S+$"
_WORDS = {
    **POLICY_WORDS,
    NAME: "a lower-case DNS label: a-z, 0-9 and '-', at most 63 characters",
    URL: "a URL starting with http:// or https://",
}
_RECEIVER_TAG = re.compile(r"(receivers\.\d+)\.(?:slack|pagerduty|webhook)\b")
DB_URL_VAR = "GATEKEEPER_DB_URL"
PROMETHEUS_URL_VAR = "GATEKEEPER_PROMETHEUS_URL"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Strict):
    host: str = "127.0.0.1"  # 0.0.0.0 in a pod
    port: int = Field(default=8080, ge=0, le=65535)  # 0: a free port (tests)
    public_url: str | None = Field(default=None, pattern=URL)  # links in notifications
    threads: int = Field(default=4, ge=1, le=64)  # worker threads answering the API


class StoreConfig(_Strict):
    url: str | None = None  # None: $GATEKEEPER_HOME's SQLite file


class PrometheusConfig(_Strict):
    url: str | None = Field(default=None, pattern=URL)  # None: the built-in scraper


class ArgoConfig(_Strict):
    """argo-server and the step pods; the token comes from GATEKEEPER_ARGO_TOKEN or
    ``token_file``, never from this file."""

    server: str = Field(pattern=URL)
    namespace: str = Field(default="argo", pattern=NAME)
    image: str | None = None  # the image the step pods run
    service_account: str | None = Field(default=None, pattern=NAME)
    env_secret: str | None = Field(default=None, pattern=NAME)  # GATEKEEPER_DB_URL etc.
    token_file: str | None = None
    ca_file: str | None = None
    insecure: bool = False


class ExecutorConfig(_Strict):
    kind: Literal["local", "argo"] = "local"  # argo: every release runs as a Workflow
    argo: ArgoConfig | None = None  # needed for kind argo and for releases saying argo

    @model_validator(mode="after")
    def _argo(self) -> ExecutorConfig:
        if self.kind == "argo" and self.argo is None:
            raise ValueError("kind argo needs the argo section (server, namespace, ...)")
        return self


class LeaseConfig(_Strict):
    kind: Literal["database", "kubernetes"] = "database"
    name: str = Field(default="gatekeeper-controller", pattern=NAME)
    namespace: str | None = Field(default=None, pattern=NAME)  # kubernetes: default the pod's
    duration: Duration = 15.0  # a leader that cannot renew for this long is replaced
    renew: Duration = 5.0  # how often the leader renews

    @model_validator(mode="after")
    def _timing(self) -> LeaseConfig:
        if not 0 < self.renew < self.duration:
            raise ValueError(
                f"renew {format_duration(self.renew)} must be above 0s and below duration "
                f"{format_duration(self.duration)}"
            )
        return self


class ControllerConfig(_Strict):
    interval: Duration = 1.0  # how often the leader reads the queue and its releases
    # Target types a submitted release may use. The local target runs the spec's commands
    # on this machine: allow it only where everyone who may submit may run commands here.
    targets: tuple[Literal["kubernetes", "local"], ...] = ("kubernetes",)

    @model_validator(mode="after")
    def _check(self) -> ControllerConfig:
        if not 0 < self.interval <= 60:
            raise ValueError(f"interval {format_duration(self.interval)}: above 0s, at most 60s")
        if not self.targets:
            raise ValueError("targets: allow at least one of kubernetes, local")
        return self


class OidcConfig(_Strict):
    issuer: str = Field(pattern=URL)
    audience: str
    jwks_url: str | None = Field(default=None, pattern=URL)
    roles_claim: str = "roles"
    name_claim: str = "sub"
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    leeway: Duration = 30.0


class AuthConfig(_Strict):
    tokens_file: str | None = None  # lines principal:role1,role2:token, stored hashed at start
    oidc: OidcConfig | None = None


class ServiceConfig(_Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    prometheus: PrometheusConfig = Field(default_factory=PrometheusConfig)
    kubeconfig: str | None = None  # kubernetes target and lease; else KUBECONFIG or in-cluster
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    lease: LeaseConfig = Field(default_factory=LeaseConfig)
    controller: ControllerConfig = Field(default_factory=ControllerConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    notifications: NotifyConfig = Field(default_factory=NotifyConfig)

    def with_environment(self, environ: Mapping[str, str]) -> ServiceConfig:
        """GATEKEEPER_DB_URL and GATEKEEPER_PROMETHEUS_URL win over the file."""
        db = environ.get(DB_URL_VAR, "").strip()
        prom = environ.get(PROMETHEUS_URL_VAR, "").strip()
        update: dict[str, Any] = {}
        if db:
            update["store"] = StoreConfig(url=db)
        if prom:
            if not prom.startswith(("http://", "https://")):
                raise InvalidInput(
                    f"{PROMETHEUS_URL_VAR} {prom!r}: a URL starting with http:// or https://"
                )
            update["prometheus"] = PrometheusConfig(url=prom)
        return self.model_copy(update=update) if update else self


def parse_service_config(
    data: Any, *, source: str = "config", environ: Mapping[str, str] | None = None
) -> ServiceConfig:
    """The configuration from parsed YAML; InvalidInput naming each bad field."""
    env = os.environ if environ is None else environ
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{source}: the configuration is a mapping, got {type(data).__name__}")
    try:
        config = ServiceConfig.model_validate(dict(data))
    except ValidationError as e:
        # A receiver's fields are named by their index, without its type's tag in between.
        raise InvalidInput(_RECEIVER_TAG.sub(r"\1", error_text(e, source, _WORDS))) from e
    return config.with_environment(env)


def load_service_config(
    path: Path | None, environ: Mapping[str, str] | None = None
) -> ServiceConfig:
    """The file at ``path`` (None: every default), with the environment's overrides."""
    if path is None:
        return parse_service_config({}, environ=environ)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInput(f"config {path}: cannot read: {e}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise InvalidInput(f"config {path}: not valid YAML: {e}") from e
    return parse_service_config(data, source=str(path), environ=environ)
