"""Property-based tests of the API from its own OpenAPI document (schemathesis): whatever
the request generated for an operation, valid or not, the service never answers 5xx,
answers only documented status codes, and its bodies match the document."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, cast

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from gatekeeper.api.app import create_app
from gatekeeper.engine.auth import issue_token
from gatekeeper.engine.service.wiring import Service
from tests.support.service import BACKENDS, Harness, database, local_spec, serving

pytestmark = pytest.mark.integration

ALL_ROLES = ["viewer", "ci", "release-manager", "engineering-lead", "cto", "admin"]
# The document the service serves on /openapi.json, made without a running service.
DOCUMENT = create_app(cast(Service, None)).openapi()
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
OPERATIONS = {op.ok().label: op.ok() for op in SCHEMA.get_all_operations() if isinstance(op, Ok)}
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


def _takes_input(label: str) -> bool:
    method, path = label.split(" ", 1)
    spec = DOCUMENT["paths"][path][method.lower()]
    return bool(spec.get("parameters") or spec.get("requestBody"))


# Negative cases need something to make invalid: a parameter or a body.
CASES = [
    pytest.param(label, mode, id=f"{label}-{mode.value}")
    for label in sorted(OPERATIONS)
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or _takes_input(label)
]


@pytest.fixture(scope="module", params=BACKENDS)
def gk(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Harness]:
    with database(request.param, tmp_path_factory.mktemp("schema")) as url, serving(url) as h:
        h.tokens["root"] = issue_token(h.service.store, "root", ALL_ROLES, actor="tests").token
        for version in ("v2", "v3"):  # something to find, approve, abort and roll back
            h.submit(local_spec(version, app=f"app-{version}", approvals=["promote"]))
        yield h


def test_the_service_serves_the_document_these_tests_are_generated_from(gk: Harness) -> None:
    assert gk.call("GET", "/openapi.json", None).json() == DOCUMENT


@pytest.mark.parametrize(("label", "mode"), CASES)
def test_no_request_makes_the_service_fail(gk: Harness, label: str, mode: GenerationMode) -> None:
    operation = OPERATIONS[label]
    auth = {"Authorization": f"Bearer {gk.tokens['root']}"}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=int(os.environ.get("GATEKEEPER_SCHEMA_EXAMPLES", "40")),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        response = case.call(base_url=gk.url, headers=auth)
        case.validate_response(response, checks=CHECKS)

    check()
