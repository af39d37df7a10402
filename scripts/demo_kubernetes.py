"""`make demo-kubernetes`: `gatekeeper demo` on Kubernetes, through a real Gateway.

Starts the e2e test bed (tests/e2e/testbed: a real API server, Traefik as the Gateway API
implementation, Prometheus discovering the pods through the API server, app pods as local
processes), installs the demo app `shop` at v1 (a Deployment of 2 pods, a Service, an
HTTPRoute on the bed's Gateway), sends it 150 requests a second through the Gateway, and runs
two canary releases as the gatekeeper's ServiceAccount bound to the minimal Role, judged by
the bed's Prometheus with the default gates, time compressed 30x:

- a good one, v1 -> v2 (image `demo:v2`): promoted;
- a bad one, v2 -> v3 (image `demo:v3-bad`, 8% of requests answer 500): rolled back.

It prints the same summary as `gatekeeper demo` (the command's own printing, with this run in
place of the local one) and stops everything. Exit 0 when both ended as expected.

With `--executor argo` each release runs as an Argo Workflow on the bed's workflow-controller
(each step a pod running `gatekeeper step run`), and `argo get`'s own view of each workflow
is printed beside the summary.

    .venv/bin/python scripts/demo_kubernetes.py [--executor local|argo] [--json]

The bed's binaries must be built (`scripts/testbed-build`; the Makefile target does it).
"""

from __future__ import annotations

import contextlib
import functools
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kubernetes import config  # noqa: E402

from gatekeeper.cli import demo_cmd  # noqa: E402
from gatekeeper.domain.release import Phase, ReleaseSpec  # noqa: E402
from gatekeeper.engine.demo import DemoResult, DemoRun  # noqa: E402
from gatekeeper.engine.executor import Listener  # noqa: E402
from tests.e2e.argo_release import WORKFLOW_SERVICE_ACCOUNT, argo_options, argo_spec  # noqa: E402
from tests.e2e.kubernetes_release import (  # noqa: E402
    TIME_SCALE,
    install_demo_app,
    namespace_for,
    options,
    release_spec,
)
from tests.e2e.kubernetes_target import Raw, service_account_kubeconfig  # noqa: E402
from tests.e2e.testbed import ClusterBed, paths, start_bed  # noqa: E402
from tests.e2e.testbed.traffic import BackgroundLoad  # noqa: E402
from workflows.names import workflow_name  # noqa: E402

LOAD_RPS = 150.0
METRICS = "prometheus on the bed (pod discovery, 1s scrapes)"


def run_kubernetes_demo(
    *,
    listener_for: Callable[[str], contextlib.AbstractContextManager[Listener]],
    use_prometheus: bool | None = None,
    say: Callable[[str], None] = print,
    workdir: Path | None = None,
    executor: str = "local",
) -> DemoResult:
    """The demo's two releases on the bed; `gatekeeper demo`'s run_demo, for Kubernetes."""
    from gatekeeper.engine.runner import run_release

    if use_prometheus is False:
        raise SystemExit("demo-kubernetes: the bed's Prometheus judges the releases (no --scraper)")
    on_argo = executor == "argo"
    t0 = time.monotonic()
    bed = start_bed(with_argo=on_argo)
    runs: list[DemoRun] = []
    try:
        say(
            f"demo: bed up in {bed.startup_seconds:.0f}s: API server {bed.server}, Gateway "
            f"{bed.gateway_url} (Traefik), Prometheus {bed.prometheus_url}, pods on "
            f"{bed.pod_network}"
        )
        if bed.data_plane_note:
            say(f"demo: data plane degraded: {bed.data_plane_note}")
        kube = config.new_client_from_config(config_file=str(bed.kubeconfig))  # type: ignore[no-untyped-call]
        raw = Raw(kube)
        ns = namespace_for(raw, f"demo-{secrets.token_hex(3)}")
        app = install_demo_app(bed, raw, ns, router="gateway-api")
        kubeconfig = service_account_kubeconfig(bed, raw, ns)
        if on_argo:
            raw.create(
                "ServiceAccount",
                bed.argo_namespace,
                {"metadata": {"name": WORKFLOW_SERVICE_ACCOUNT}},
            )
            say(f"demo: releases run as Argo Workflows (argo-server {bed.argo_url})")
        say(
            f"demo: Deployment {ns}/shop (2 pods, demo:v1), Service and HTTPRoute on the "
            f"Gateway (Host {app.host}); time compressed {TIME_SCALE:g}x; load {LOAD_RPS:g} "
            "requests/s through the Gateway"
        )
        good = release_spec(app, "canary", version="v2", environment="demo")
        bad: ReleaseSpec = release_spec(
            app,
            "canary",
            version="v3",
            image="demo:v3-bad",
            stable_version="v2",
            environment="demo",
        )
        work = workdir or Path(tempfile.mkdtemp(prefix="gatekeeper-demo-k8s-"))
        with BackgroundLoad(bed.gateway_url, app.host, rps=LOAD_RPS) as load:
            for name, spec, expected in (
                ("good release", good, Phase.PROMOTED),
                ("bad release", bad, Phase.ROLLED_BACK),
            ):
                say(
                    f"demo: {name}: {spec.app} {spec.stable.version} -> {spec.version} "
                    f"({spec.strategy.type}, image {spec.image})"
                )
                started = time.monotonic()
                since = load.mark()
                if on_argo:
                    spec = argo_spec(spec)
                with listener_for(f"{name} {spec.version}") as listener:
                    make = argo_options if on_argo else options
                    run_options = make(bed, kubeconfig, work)
                    run_options.listener = listener
                    outcome = run_release(spec, run_options)
                runs.append(DemoRun(name, expected, outcome, time.monotonic() - started))
                say(f"demo: {name}: {outcome.phase.value}: {outcome.reason}")
                say(f"demo: {name}: users through the Gateway: {load.between(since)}")
                if on_argo:
                    say(argo_get(bed, workflow_name(spec.release_id)))
        kube.close()
    finally:
        bed.stop()
        say(f"demo: bed stopped; {time.monotonic() - t0:.0f}s in all")
    return DemoResult(metrics=METRICS, runs=runs)


def argo_get(bed: ClusterBed, name: str) -> str:
    """`argo get`'s own view of a workflow (the argo CLI built with the bed, kubeconfig mode)."""
    argo = paths.locate_binaries(with_argo=True, with_data_plane=False).argo
    found = subprocess.run(
        [str(argo), "get", name, "-n", bed.argo_namespace, "--kubeconfig", str(bed.kubeconfig)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return (found.stdout or found.stderr).rstrip()


def main(argv: list[str]) -> int:
    """`gatekeeper demo`'s command, its printing and exit code, with this run in place."""
    import typer

    executor = "local"
    if "--executor" in argv:
        executor = argv[argv.index("--executor") + 1]
    if executor not in ("local", "argo"):
        print(f"demo-kubernetes: --executor {executor!r}: give local or argo", file=sys.stderr)
        return 2
    # The name the command runs the demo through (its tests replace it too).
    demo_cmd.run_demo = functools.partial(run_kubernetes_demo, executor=executor)  # type: ignore[attr-defined]
    try:
        demo_cmd.demo_cmd(scraper=False, as_json="--json" in argv)
    except typer.Exit as e:
        return int(e.exit_code)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
