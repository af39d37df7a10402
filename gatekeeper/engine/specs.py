"""Release specs before anything runs: read a file, resolve its gates, check its plan.

Light on purpose: `gatekeeper plan` needs this and nothing of the executor or the store.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from gatekeeper.domain.errors import InvalidInput
from gatekeeper.domain.plan import Plan
from gatekeeper.domain.release import ReleaseSpec, parse_release
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
    return gate_set.scaled(spec.time_scale) if spec.time_scale != 1 else gate_set


def validate(spec: ReleaseSpec, base_dir: Path | None = None) -> tuple[Plan, GateSet]:
    """Everything that can be checked before anything starts."""
    plan = plan_for(spec)
    check_plan(plan, ability_for(spec))  # a router that cannot carry out a weight refuses it
    return plan, resolve_gates(spec, base_dir)
