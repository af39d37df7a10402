"""`gatekeeper run` killed (SIGKILL) mid-release and started again resumes without repeating a
change: the API server's audit log holds exactly the writes of a release never interrupted.

The gatekeeper runs as a real process (`.venv/bin/gatekeeper run SPEC --kubeconfig ...
--prometheus ...`) with the token of its own ServiceAccount (bound to the minimal Role), so
every write it makes is attributable in the audit log. Users keep asking through the Gateway
meanwhile and never notice: the data plane does not depend on the gatekeeper's process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from gatekeeper.domain.exits import for_phase
from gatekeeper.domain.release import Phase
from tests.e2e.kubernetes_release import (
    CANARY_WRITES,
    db_url,
    events,
    install_demo_app,
    load_on,
    release_spec,
)
from tests.e2e.kubernetes_target import Raw, service_account_kubeconfig
from tests.e2e.testbed import ClusterBed
from tests.e2e.testbed.audit import utcnow

GATEKEEPER = Path(sys.executable).parent / "gatekeeper"
RUN_TIMEOUT_S = 240.0

# Every write of a canary [20, 50, 100] over gateway-api that is promoted, as an uninterrupted
# run makes them (by verb, resource, name).
UNINTERRUPTED = CANARY_WRITES


@pytest.fixture
def raw(kube: client.ApiClient) -> Raw:
    return Raw(kube)


def route_weight(raw: Raw, ns: str) -> int:
    route = raw.get("HTTPRoute", ns, "shop") or {}
    for rule in route.get("spec", {}).get("rules", []):
        for ref in rule.get("backendRefs", []):
            if ref.get("name") == "shop-candidate":
                return int(ref.get("weight", 1))
    return 0


def test_a_killed_run_resumes_without_repeating_a_change(
    bed: ClusterBed, raw: Raw, namespace: str, tmp_path: Path
) -> None:
    # Given the demo app at v1, a canary release file, and the gatekeeper's own identity
    app = install_demo_app(bed, raw, namespace, router="gateway-api")
    kubeconfig = service_account_kubeconfig(bed, raw, namespace)
    spec = release_spec(app, "canary", version="v2")
    spec_file = tmp_path / "release.yaml"
    spec_file.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    argv = [
        str(GATEKEEPER),
        "run",
        str(spec_file),
        "--kubeconfig",
        str(kubeconfig),
        "--prometheus",
        bed.prometheus_url,
        "--db",
        db_url(tmp_path),
    ]
    env = {**os.environ, "GATEKEEPER_HOME": str(tmp_path / "home")}
    output = tmp_path / "gatekeeper.log"
    user = f"system:serviceaccount:{namespace}:gatekeeper"

    def start() -> subprocess.Popen[bytes]:
        with output.open("ab") as log:
            return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)

    def kill_once(proc: subprocess.Popen[bytes], moment: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not moment():
            assert proc.poll() is None, f"ended before {what}:\n{output.read_text()}"
            assert time.monotonic() < deadline, f"no {what}:\n{output.read_text()}"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    since = utcnow()
    with load_on(bed, app) as load:
        started = load.mark()
        # When the run is killed once the candidate Deployment exists (deploy step) ...
        kill_once(
            start(),
            lambda: raw.get("Deployment", namespace, "shop-candidate") is not None,
            "candidate Deployment",
        )
        # ... and again once the route gives the candidate 50% (mid-analysis) ...
        kill_once(start(), lambda: route_weight(raw, namespace) == 50, "shift to 50%")
        # ... and started a third time
        last = start()
        code = last.wait(RUN_TIMEOUT_S)

    # Then three processes ran it, the last two from where it was, and it was promoted
    log = output.read_text()
    assert code == int(for_phase(Phase.PROMOTED)), log
    timeline = events(tmp_path, spec.release_id)
    runs = [e for e in timeline if e.kind == "phase" and e.message == "running: running"]
    assert len(runs) == 3, log
    resumed = [e.message for e in timeline if e.kind == "resumed"]
    # (killed in its first step, the second run starts it again: no resume to say)
    assert resumed[-1] in (
        "resuming at step 5 of 9 (shift-50)",
        "resuming at step 6 of 9 (analyze-50)",
    ), resumed

    # and the API server saw each change once: exactly the writes of an uninterrupted run
    bed.audit.wait_for(
        lambda a: any(
            e.verb == "delete"
            for e in a.writes(since, user=user, resource="services", name="shop-candidate")
        ),
        what="the last write",
    )
    writes = bed.audit.writes(since, user=user, succeeded_only=False)
    refused = [(e.verb, e.resource, e.name, e.code) for e in writes if e.code >= 300]
    assert refused == [], refused
    assert Counter((e.verb, e.resource, e.name) for e in writes) == UNINTERRUPTED

    # while users never noticed the gatekeeper dying
    seen = load.between(started)
    assert seen.failures == 0 and set(seen.by_code) == {200}, str(seen)
