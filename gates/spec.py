"""Gate specs as the gates read them: the domain's models, and reading a gates file."""

from __future__ import annotations

from pathlib import Path

import yaml

from gatekeeper.domain.errors import InvalidInput
from gatekeeper.domain.gates import (
    GATE_NAME,
    MIN_SCALED_INTERVAL,
    POOL_MAPPINGS,
    PROFILE_NAMES,
    RESOURCE_SOURCES,
    Comparison,
    GateSet,
    GateSpec,
    Kind,
    Metric,
    NoData,
    default_gates,
    parse_gate_set,
)

__all__ = [
    "GATE_NAME",
    "MIN_SCALED_INTERVAL",
    "POOL_MAPPINGS",
    "PROFILE_NAMES",
    "RESOURCE_SOURCES",
    "Comparison",
    "GateSet",
    "GateSpec",
    "Kind",
    "Metric",
    "NoData",
    "default_gates",
    "load_gate_set",
    "parse_gate_set",
]


def load_gate_set(path: Path) -> GateSet:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise InvalidInput(f"gates file {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise InvalidInput(f"gates file {path}: not valid YAML: {e}") from e
    return parse_gate_set(data, source=str(path))
