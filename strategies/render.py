"""Plans as the CLI shows them: table rows and JSON."""

from __future__ import annotations

from typing import Any

from gatekeeper.domain.plan import Plan


def plan_rows(plan: Plan) -> list[tuple[int, str, str, str]]:
    """(index, name, kind, description) per step; the index is the step's plan index, from 0."""
    return [(i, s.name, s.kind, s.describe()) for i, s in enumerate(plan.steps)]


def plan_json(plan: Plan) -> dict[str, Any]:
    """The plan as JSON-ready data; ``Plan.model_validate`` reads it back to an equal plan."""
    return plan.model_dump(mode="json")
