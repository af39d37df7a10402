"""kwok's own Stage files, narrowed so that Argo pods and app pods are left to the bed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.e2e.testbed.kubelet import APP_LABEL

WORKFLOW_LABEL = "workflows.argoproj.io/workflow"

# kwok v0.8.0 loads no Stages by default; these are the ones of its "fast" set.
NODE_STAGES = [
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
]
POD_STAGES = ["pod/fast/pod-ready.yaml", "pod/fast/pod-complete.yaml", "pod/fast/pod-delete.yaml"]
# Deletion of Argo pods stays with kwok: their executor does not finish it. App pods are the
# bed kubelet's from start to end (it stops their processes, then deletes them).
DELETE_STAGES = {"pod-delete"}


def narrowed_stages(stage_root: Path, out_dir: Path) -> list[Path]:
    """Writes the Stage files to use and returns their paths (one `-c` each)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for rel in NODE_STAGES + POD_STAGES:
        source = stage_root / rel
        if not source.is_file():
            raise FileNotFoundError(
                f"kwok Stage file {source} is missing; rerun scripts/testbed-build"
            )
        stage: dict[str, Any] = yaml.safe_load(source.read_text())
        if stage["spec"]["resourceRef"]["kind"] == "Pod":
            excluded = [APP_LABEL]
            if stage["metadata"]["name"] not in DELETE_STAGES:
                excluded.append(WORKFLOW_LABEL)
            selector = stage["spec"].setdefault("selector", {})
            selector.setdefault("matchExpressions", []).extend(
                {"key": f'.metadata.labels["{label}"]', "operator": "DoesNotExist"}
                for label in excluded
            )
        target = out_dir / source.name
        target.write_text(yaml.safe_dump(stage, sort_keys=False))
        written.append(target)
    return written
