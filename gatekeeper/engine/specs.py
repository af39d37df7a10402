"""Release specs before anything runs: read a file, resolve its gates, check its plan.

Light on purpose: `gatekeeper plan` needs this and nothing of the executor or the store.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from gatekeeper.domain.errors import InvalidInput
from gatekeeper.domain.plan import Plan
from gatekeeper.domain.release import KubernetesTarget, ReleaseSpec, parse_release
from gatekeeper.domain.traffic import check_plan
from gatekeeper.targets.routers.factory import ability_for
from gates.spec import GateSet, default_gates, load_gate_set
from strategies.registry import plan_for


def data_home() -> Path:
    return Path(os.environ.get("GATEKEEPER_HOME", Path.home() / ".local/share/gatekeeper"))


def load_release_file(path: Path) -> ReleaseSpec:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise InvalidInput(f"release file {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise InvalidInput(f"release file {path}: not valid YAML: {e}") from e
    return parse_release(data, source=str(path))


def resolve_gates(spec: ReleaseSpec, base_dir: Path | None = None) -> GateSet:
    """The release's gates (a mapping, a list or a file path), compressed by time_scale."""
    raw = spec.gates
    if isinstance(raw, GateSet):
        gate_set = raw
    elif raw is None or raw == "default":
        gate_set = default_gates()
    else:
        path = Path(raw)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        gate_set = load_gate_set(path)
    gate_set = with_gateway_gate(spec, gate_set)
    return gate_set.scaled(spec.time_scale) if spec.time_scale != 1 else gate_set


def with_gateway_gate(spec: ReleaseSpec, gate_set: GateSet) -> GateSet:
    """On a Gateway API router with ``target.gateway_metrics``: the abort guard also reads
    the gateway's 5xx for the candidate's Service (requests a dead pod never counts)."""
    target = spec.target
    if not isinstance(target, KubernetesTarget) or not target.gateway_metrics:
        return gate_set
    from gatekeeper.targets.kubernetes.settings import Settings
    from gates.gateway import GATE_NAME, gateway_gate, gateway_profile

    if any(g.name == GATE_NAME for g in gate_set.gates):
        raise InvalidInput(
            f"gate name {GATE_NAME!r} is the gateway guard's (target.gateway_metrics "
            f"{target.gateway_metrics!r}); rename that gate"
        )
    profile = gateway_profile(target.gateway_metrics)
    names = Settings.of(spec)
    gate = gateway_gate(profile, target.namespace, names.route, names.service)
    return gate_set.model_copy(update={"gates": (*gate_set.gates, gate)})


def validate(spec: ReleaseSpec, base_dir: Path | None = None) -> tuple[Plan, GateSet]:
    """Everything that can be checked before anything starts."""
    plan = plan_for(spec)
    check_plan(plan, ability_for(spec))  # a router that cannot carry out a weight refuses it
    return plan, resolve_gates(spec, base_dir)
