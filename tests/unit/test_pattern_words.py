"""Values refused by a field's pattern are told in words, with the value, never as a regex."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from gatekeeper.domain import gates as domain_gates
from gatekeeper.domain.errors import InvalidInput
from gatekeeper.domain.release import PATTERN_WORDS, ReleaseSpec, parse_release
from gates.spec import GateSet, parse_gate_set

DNS_LABEL = (
    "is not a lower-case DNS label: a-z, 0-9 and '-', at most 63 characters, "
    "starting and ending with a letter or digit"
)
VERSION = (
    "is not a version: letters, digits, '.', '_', '+' and '-', at most 128 characters, "
    "starting with a letter or digit"
)


def _release(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "app": "shop",
        "version": "v2",
        "command": "serve --port {port}",
        "stable": {"version": "v1", "command": "serve --port {port}"},
        "strategy": {"type": "canary"},
    }
    spec.update(overrides)
    return spec


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param({"app": "Shop!"}, f"app: 'Shop!' {DNS_LABEL}", id="app"),
        pytest.param({"app": "-shop"}, f"app: '-shop' {DNS_LABEL}", id="app-leading-dash"),
        pytest.param({"app": "a" * 64}, f"app: '{'a' * 64}' {DNS_LABEL}", id="app-too-long"),
        pytest.param(
            {"environment": "prod_eu"}, f"environment: 'prod_eu' {DNS_LABEL}", id="environment"
        ),
        pytest.param({"version": "v 2"}, f"version: 'v 2' {VERSION}", id="version"),
        pytest.param(
            {"stable": {"version": ".v1", "command": "serve --port {port}"}},
            f"stable.version: '.v1' {VERSION}",
            id="stable-version",
        ),
        pytest.param(
            {"target": {"type": "kubernetes", "namespace": "Team[A]"}},
            f"target.kubernetes.namespace: 'Team[A]' {DNS_LABEL}",
            id="namespace",
        ),
        pytest.param(
            {"strategy": {"type": "blue-green", "smoke": [{"path": "health"}]}},
            "strategy.blue-green.smoke.0.path: 'health' is not a path: it starts with '/'",
            id="smoke-path",
        ),
    ],
)
def test_a_release_field_refused_by_its_pattern_is_told_in_words(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_release(_release(**overrides), source="release.yaml")
    assert str(caught.value) == f"release.yaml: {message}"


def test_a_gate_name_refused_by_its_pattern_is_told_in_words() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_gate_set(
            {"gates": [{"name": "Abort", "metric": "error_ratio", "threshold": 0.1}]},
            source="gates.yaml",
        )
    assert str(caught.value) == (
        "gates.yaml: gates.0.name: 'Abort' is not a gate name: a-z, 0-9, '_', '.' and '-', "
        "at most 63 characters, starting with a letter or digit"
    )


def _patterns(schema: Any) -> set[str]:
    if isinstance(schema, dict):
        found = {schema["pattern"]} if isinstance(schema.get("pattern"), str) else set()
        return found.union(*(_patterns(v) for v in schema.values()))
    if isinstance(schema, list):
        return set().union(*(_patterns(v) for v in schema))
    return set()


@pytest.mark.parametrize(
    ("model", "words"),
    [
        # A release's gates are read as a gate set, with the gate set's words.
        pytest.param(ReleaseSpec, {**PATTERN_WORDS, **domain_gates._PATTERN_WORDS}, id="release"),
        pytest.param(GateSet, domain_gates._PATTERN_WORDS, id="gates"),
    ],
)
def test_every_pattern_a_spec_checks_has_words(
    model: type[BaseModel], words: dict[str, str]
) -> None:
    patterns = _patterns(model.model_json_schema())
    assert patterns, "the schema has patterned fields"
    assert patterns <= words.keys()
