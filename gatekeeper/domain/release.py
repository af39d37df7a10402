"""The release spec: what CI submits. Unknown fields and bad values are refused by name."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .durations import Duration, compressed
from .errors import InvalidInput
from .gates import GateSet, parse_gate_set
from .validation import error_text

NAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
VERSION = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$"
PATH = r"^/"
LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)

# Refusals say each pattern in words: a regex tells a person little (and a console may
# take its brackets for markup).
PATTERN_WORDS = {
    NAME: "a lower-case DNS label: a-z, 0-9 and '-', at most 63 characters, "
    "starting and ending with a letter or digit",
    VERSION: "a version: letters, digits, '.', '_', '+' and '-', at most 128 characters, "
    "starting with a letter or digit",
    PATH: "a path: it starts with '/'",
    LABEL_KEY: "a label key: an optional DNS prefix and '/', then a name of letters, digits, "
    "'-', '_' and '.', at most 63 characters",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Phase(StrEnum):
    QUEUED = "queued"  # submitted to the service; waits for its turn, window or approval
    PENDING = "pending"
    RUNNING = "running"
    HOLDING = "holding"
    ROLLING_BACK = "rolling_back"  # decided; a resumed run finishes the rollback first
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"  # stopped while holding: timed out or stopped by a person
    FAILED = "failed"  # an internal error; traffic left as safe as could be made

    @property
    def final(self) -> bool:
        return self in (Phase.PROMOTED, Phase.ROLLED_BACK, Phase.ABORTED, Phase.FAILED)

    @property
    def active(self) -> bool:
        """Started and not ended: the one release that holds its app and environment (a
        queued release waits and holds nothing)."""
        return not self.final and self is not Phase.QUEUED


def _weights(values: tuple[int, ...], field: str) -> tuple[int, ...]:
    if not values:
        raise ValueError(f"{field} needs at least one step")
    if any(not 0 < v <= 100 for v in values):
        raise ValueError(f"{field} {list(values)}: each step must be between 1 and 100")
    if list(values) != sorted(set(values)):
        raise ValueError(f"{field} {list(values)}: steps must strictly increase")
    if values[-1] != 100:
        raise ValueError(f"{field} {list(values)}: the last step must be 100")
    return values


class Smoke(_Strict):
    path: str = Field(default="/", pattern=PATH)
    expect_status: int = Field(default=200, ge=100, le=599)


class CanaryStrategy(_Strict):
    type: Literal["canary"]
    steps: tuple[int, ...] = (5, 25, 50, 100)
    analysis: Duration = 600.0  # between traffic steps

    @model_validator(mode="after")
    def _check(self) -> CanaryStrategy:
        _weights(self.steps, "strategy.steps")
        return self


class BlueGreenStrategy(_Strict):
    type: Literal["blue-green"]
    smoke: tuple[Smoke, ...] = (Smoke(),)
    bake: Duration = 1800.0  # gates judge the candidate at 100% before promotion
    scale_down_delay: Duration = 600.0  # the old version stays up this long after promotion


class RollingStrategy(_Strict):
    type: Literal["rolling"]
    batches: tuple[int, ...] = (10, 25, 50, 100)
    analysis: Duration = 300.0

    @model_validator(mode="after")
    def _check(self) -> RollingStrategy:
        _weights(self.batches, "strategy.batches")
        return self


Strategy = Annotated[
    CanaryStrategy | BlueGreenStrategy | RollingStrategy, Field(discriminator="type")
]


class LocalTarget(_Strict):
    """Versions run as local processes behind a weighted router on loopback."""

    type: Literal["local"]
    router_port: int = Field(default=0, ge=0, le=65535)  # 0: a free port
    state_dir: str | None = None  # default: a folder per release under the data dir


class KubernetesTarget(_Strict):
    """Versions run as Deployments: the user's stable one and a candidate derived from it.

    Object names default to the app's name; docs/kubernetes-target.md has the object model.
    """

    type: Literal["kubernetes"]
    namespace: str = Field(default="default", pattern=NAME)
    # stable's full size; None: what the stable Deployment declares. When given, the
    # Deployment must agree. The replica-ratio router needs it to check a plan up front.
    replicas: int | None = Field(default=None, ge=1, le=1000)
    # gateway-api: any percent; service-selector: 0 or 100; replica-ratio: steps of
    # 1/replicas; istio: any percent (VirtualService weights over DestinationRule subsets)
    router: Literal["gateway-api", "service-selector", "replica-ratio", "istio"] = "gateway-api"
    deployment: str | None = Field(default=None, pattern=NAME)  # the stable Deployment
    container: str | None = Field(default=None, pattern=NAME)  # whose image changes
    service: str | None = Field(default=None, pattern=NAME)  # the stable Service
    route: str | None = Field(default=None, pattern=NAME)  # gateway-api: the HTTPRoute
    virtual_service: str | None = Field(default=None, pattern=NAME)  # istio
    destination_rule: str | None = Field(default=None, pattern=NAME)  # istio
    version_label: str = Field(default="version", pattern=LABEL_KEY)  # on every app pod
    metrics_port: int | None = Field(default=None, ge=1, le=65535)  # else a port named metrics
    progress_deadline: Duration = 600.0  # readiness wait of each rollout (not time-scaled)
    not_ready_grace: Duration = 60.0  # P0: a pod not ready this long
    max_restarts: int = Field(default=0, ge=0)  # P0: more restarts since the deploy
    # gateway-api: the Gateway implementation whose per-backend 5xx the abort guard also
    # reads for the candidate's Service (gates/gateway.py names them: traefik); None: not read
    gateway_metrics: str | None = Field(default=None, pattern=NAME)
    # After traffic leaves the candidate's pods, how long before they are deleted: the data
    # plane's time to apply the change (Traefik, kube-proxy: ~2s; cloud load balancers: more).
    drain: Duration = 5.0

    @model_validator(mode="after")
    def _check(self) -> KubernetesTarget:
        if self.progress_deadline <= 0:
            raise ValueError("progress_deadline must be above 0")
        for field, base in (("deployment", self.deployment), ("service", self.service)):
            # The candidate's objects are named <name>-candidate / <name>-preview.
            if base is not None and len(base) > 63 - len("-candidate"):
                raise ValueError(f"{field} {base!r}: at most 53 characters (a suffix is added)")
        return self


Target = Annotated[LocalTarget | KubernetesTarget, Field(discriminator="type")]


class StableVersion(_Strict):
    version: str = Field(pattern=VERSION)
    command: str | None = None
    image: str | None = None


class ReleaseSpec(_Strict):
    """One release: a candidate version of an app, how to roll it out, and what guards it."""

    app: str = Field(pattern=NAME)
    environment: str = Field(default="production", pattern=NAME)
    version: str = Field(pattern=VERSION)
    command: str | None = None  # local target: how to run the candidate ({port} is filled in)
    image: str | None = None  # kubernetes target
    stable: StableVersion
    strategy: Strategy
    # A gate set (see the gates reference), its list of gates, or a path to a gates file;
    # None (or "default"): the built-in set.
    gates: GateSet | str | None = None
    approvals: tuple[str, ...] = ()  # names of plan steps that need a person's approval first
    expedited: bool = False
    expedited_reason: str | None = None
    target: Target = Field(default_factory=lambda: LocalTarget(type="local"))
    time_scale: float = Field(default=1.0, ge=1.0, le=10_000.0)  # compress every duration
    hold_timeout: Duration = 3600.0  # stop when holding longer than this
    # Who runs the plan: this process (local), or an Argo Workflow (one pod per step).
    executor: Literal["local", "argo"] = "local"
    # A revert: goes back from the promoted ``stable`` to the earlier ``version`` (the
    # service's rollback of a promoted release); its id says which version it reverts.
    revert: bool = False

    @field_validator("gates", mode="before")
    @classmethod
    def _gate_set(cls, value: Any) -> Any:
        """A mapping or a list is a gate set, refused as a whole with every bad field named
        (rather than once per member of the union)."""
        if isinstance(value, dict | list):
            try:
                return parse_gate_set(value, source="gates")
            except InvalidInput as e:
                raise ValueError(str(e).replace("\ngates: ", "; ").removeprefix("gates: ")) from e
        return value

    @model_validator(mode="after")
    def _check(self) -> ReleaseSpec:
        if self.version == self.stable.version:
            raise ValueError(
                f"version {self.version!r} is the stable version already; nothing to release"
            )
        if self.expedited and not (self.expedited_reason or "").strip():
            raise ValueError("expedited: an expedited release needs expedited_reason")
        if not self.expedited and self.expedited_reason:
            raise ValueError("expedited_reason is set but expedited is false")
        if self.target.type == "local":
            for who, cmd in (("command", self.command), ("stable.command", self.stable.command)):
                if not cmd:
                    raise ValueError(f"{who}: the local target runs each version from a command")
                if "{port}" not in cmd:
                    raise ValueError(f"{who}: the command must take {{port}}, got {cmd!r}")
        if self.executor == "argo" and self.target.type != "kubernetes":
            raise ValueError(
                f"executor 'argo' with target {self.target.type!r}: an Argo Workflow's step "
                "pods run in the cluster and reach only a kubernetes target"
            )
        if self.target.type == "kubernetes":
            for who, image in (("image", self.image), ("stable.image", self.stable.image)):
                if not image:
                    raise ValueError(
                        f"{who}: the kubernetes target runs each version from an image"
                    )
            if self.target.gateway_metrics and self.target.router != "gateway-api":
                raise ValueError(
                    f"target.gateway_metrics with router {self.target.router!r}: the gateway's "
                    "per-backend counter tells the candidate apart only on the gateway-api router"
                )
            if self.target.router == "replica-ratio":
                if self.strategy.type != "rolling":
                    raise ValueError(
                        f"target.router 'replica-ratio' with strategy {self.strategy.type!r}: "
                        "traffic follows replicas there, so a candidate takes traffic as soon "
                        "as it runs; only the rolling strategy can use it"
                    )
                if self.target.replicas is None:
                    raise ValueError(
                        "target.replicas: the replica-ratio router moves traffic one replica "
                        "at a time; give stable's replica count so the plan can be checked"
                    )
        return self

    @property
    def release_id(self) -> str:
        base = f"{self.app}-{self.environment}-{self.version}"
        return f"{base}-revert-of-{self.stable.version}" if self.revert else base

    def scaled(self, seconds: float) -> float:
        return compressed(seconds, self.time_scale)


def _error_text(e: ValidationError, source: str) -> str:
    return error_text(e, source, PATTERN_WORDS)


def parse_release(data: Any, *, source: str = "release") -> ReleaseSpec:
    if not isinstance(data, dict):
        raise InvalidInput(f"{source}: a release spec is a mapping, got {type(data).__name__}")
    try:
        return ReleaseSpec.model_validate(data)
    except ValidationError as e:
        raise InvalidInput(_error_text(e, source)) from e
