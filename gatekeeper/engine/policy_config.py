"""The release policy from YAML: a file of its own or the ``policy`` section of another."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gatekeeper.domain.errors import InvalidInput
from gatekeeper.domain.policy import PolicyConfig, parse_policy

__all__ = ["load_policy_file", "parse_policy_yaml"]


def parse_policy_yaml(
    text: str, *, source: str = "policy", section: str | None = None
) -> PolicyConfig:
    """The policy in YAML ``text``; with ``section``, the policy is that key of the document.

    A missing section or an empty document is the default policy (always open)."""
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise InvalidInput(f"{source}: not valid YAML: {e}") from e
    if section is not None:
        if data is None:
            return PolicyConfig()
        if not isinstance(data, dict):
            raise InvalidInput(f"{source}: the config is a mapping, got {type(data).__name__}")
        data, source = data.get(section), f"{source}: {section}"
    return parse_policy(data, source=source)


def load_policy_file(path: Path, *, section: str | None = None) -> PolicyConfig:
    """The policy in the YAML file at ``path`` (see ``parse_policy_yaml``)."""
    try:
        text = path.read_text()
    except OSError as e:
        raise InvalidInput(f"policy file {path}: {e.strerror}") from e
    return parse_policy_yaml(text, source=str(path), section=section)
