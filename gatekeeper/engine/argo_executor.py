"""The Argo executor: a release runs as an Argo Workflow; this process submits and follows it.

The workflow's pods run the same step code (`gatekeeper step run`) against the same store, so
the release's phase, events and gate results are written by them; the follower here:

* ships the step templates (the WorkflowTemplate) and submits the release's Workflow, or
  finds it when it runs already (a second `run` of the same release follows the first's);
* reads the workflow whenever argo-server's watch stream says it changed (else once per
  `poll_s`), records each node's phase change as a
  `workflow-node` event and passes the pods' events and gate results to the progress display;
* resumes an approval's suspend node once the store holds an approval that step accepts (one
  given before the run with `--approve`, or by `gatekeeper approve` without argo-server
  settings);
* sees a release aborted in the store while its workflow runs, and stops the workflow (its
  exit handler rolls back);
* rides out an argo-server outage: each read is retried with backoff, a read that still fails
  is recorded once, and the follower goes on reading; the workflow itself runs on in the
  cluster, and the follower re-syncs from its status when argo-server answers again.

It ends when the workflow ends, with the release's phase from the store.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from gatekeeper.domain.errors import InvalidInput, TemporaryError
from gatekeeper.domain.plan import Plan, WaitForApproval
from gatekeeper.domain.release import Phase, ReleaseSpec
from gatekeeper.store.base import Event, Store
from workflows.client import ArgoClient, NodeView, WorkflowView

from .argo_settings import ArgoSettings
from .executor import Outcome
from .listener import Listener, QuietListener

NODE_EVENT = "workflow-node"
SUBMITTED_EVENT = "workflow-submitted"
OUTAGE_EVENT = "argo-server"
RELEASE_MARK = "gatekeeper.dev/release-created-at"
WATCH_BACKOFF_CAP_S = 30.0


def client_for(settings: ArgoSettings) -> ArgoClient:
    return ArgoClient(settings.server, settings.namespace, settings.token, verify=settings.verify)


def workflow_settings(
    settings: ArgoSettings, db_url: str | None, prometheus_url: str | None
) -> Any:
    """The compiler's settings: image, ServiceAccount, and the step pods' env."""
    from workflows.settings import WorkflowSettings

    env: dict[str, str] = {}
    if settings.env_secret is None:
        if db_url:
            env["GATEKEEPER_DB_URL"] = db_url
        if prometheus_url:
            env["GATEKEEPER_PROMETHEUS_URL"] = prometheus_url
    env.update(settings.step_env)
    given: dict[str, Any] = {
        "namespace": settings.namespace,
        "image": settings.image,
        "service_account": settings.service_account,
        "env": env,
        "env_from_secret": settings.env_secret,
    }
    return WorkflowSettings(**{k: v for k, v in given.items() if v is not None})


def workflow_name(spec: ReleaseSpec, plan: Plan, settings: ArgoSettings) -> str:
    from workflows.compiler import compile_workflow

    doc = compile_workflow(plan, spec, workflow_settings(settings, None, None))
    return str(doc["metadata"]["name"])


def run_on_argo(
    spec: ReleaseSpec,
    plan: Plan,
    store: Store,
    settings: ArgoSettings,
    *,
    db_url: str | None,
    prometheus_url: str | None,
    listener: Listener | None = None,
) -> Outcome:
    """Submit (or find) the release's workflow and follow it to its end: argo-server's watch
    stream wakes the follower on each change of the workflow, which it then reads whole
    (a read re-syncs, whatever was missed); without events it reads every ``poll_s``."""
    from workflows.compiler import compile_template, compile_workflow

    wf_settings = workflow_settings(settings, db_url, prometheus_url)
    template = compile_template(wf_settings)
    workflow = compile_workflow(plan, spec, wf_settings)
    name = str(workflow["metadata"]["name"])
    record = store.get_release(spec.release_id)
    # Which release of the store this workflow runs: a workflow of that name left from another
    # store (or a deleted one) is refused, never followed as if it were this release's.
    mark = record.created_at.isoformat() if record is not None else ""
    workflow["metadata"].setdefault("annotations", {})[RELEASE_MARK] = mark
    client = client_for(settings)
    follower = _Follower(spec, plan, store, client, name, listener or QuietListener())
    stop, wake = threading.Event(), threading.Event()
    watcher = threading.Thread(
        target=_watch, args=(client, name, wake, stop), name=f"watch {name}", daemon=True
    )
    try:
        client.ensure_template(template)
        view, created = client.submit(workflow)
        if not created and view.annotations.get(RELEASE_MARK) != mark:
            raise InvalidInput(
                f"Workflow {settings.namespace}/{name} exists but runs another release "
                f"{spec.release_id} (submitted {view.annotations.get(RELEASE_MARK) or '?'}, "
                f"this store's: {mark}); delete it or use another namespace"
            )
        follower.note(
            SUBMITTED_EVENT,
            f"Workflow {settings.namespace}/{name} "
            + ("submitted" if created else "found running; following it"),
        )
        follower.sync(view)
        watcher.start()
        while not view.final:
            wake.wait(settings.poll_s)
            wake.clear()
            seen = follower.read()
            if seen is not None:
                view = seen
        return follower.outcome(view)
    finally:
        stop.set()
        client.close()
        if watcher.is_alive():
            watcher.join(5)


def _watch(client: ArgoClient, name: str, wake: threading.Event, stop: threading.Event) -> None:
    """Keeps a watch of the workflow open (again after each break, with backoff)."""
    failures = 0
    while not stop.is_set():
        try:
            client.watch(name, wake.set, stop)
            failures = 0
        except Exception:  # noqa: BLE001 - the reads every poll_s go on meanwhile
            failures += 1
        stop.wait(min(WATCH_BACKOFF_CAP_S, 0.5 * 2 ** min(failures, 6)))


class _Follower:
    def __init__(
        self,
        spec: ReleaseSpec,
        plan: Plan,
        store: Store,
        client: ArgoClient,
        name: str,
        listener: Listener,
    ) -> None:
        self.spec = spec
        self.plan = plan
        self.store = store
        self.client = client
        self.name = name
        self.listener = listener
        self.rid = spec.release_id
        self._node_phase: dict[str, str] = _recorded_node_phases(store, self.rid)
        self._events_seen = len(store.events(self.rid))
        self._gates_seen = 0
        self._outage: str | None = None
        self._stopped = False
        self._resumed: set[str] = set()

    def note(self, kind: str, message: str) -> None:
        self.store.record_event(Event(self.rid, datetime.now(UTC), kind, message))

    def read(self) -> WorkflowView | None:
        try:
            view = self.client.status(self.name)
        except TemporaryError as e:
            if self._outage is None:
                self._outage = str(e)
                self.note(OUTAGE_EVENT, f"unreachable, following on when it answers: {e}")
            self._relay()
            return None
        if self._outage is not None:
            self._outage = None
            self.note(OUTAGE_EVENT, f"answers again; Workflow {self.name} re-read")
        if view is None:
            self.note(OUTAGE_EVENT, f"Workflow {self.name} is gone (deleted?)")
            return WorkflowView(self.name, self.client.namespace, "Error", "deleted", ())
        self.sync(view)
        return view

    def sync(self, view: WorkflowView) -> None:
        for node in view.nodes:
            if node.step is None or node.type not in ("Pod", "Suspend"):
                continue
            if self._node_phase.get(node.display_name) != node.phase:
                self._node_phase[node.display_name] = node.phase
                said = f"{node.display_name} {node.phase}" + (
                    f": {node.message}" if node.message else ""
                )
                self.note(NODE_EVENT, said)
                self._progress(node)
        self._approvals(view)
        self._aborted(view)
        self._relay()

    def _progress(self, node: NodeView) -> None:
        if node.phase == "Running" and node.step is not None and node.step.isdigit():
            index = int(node.step)
            if index < len(self.plan.steps):
                self.listener.step(index, len(self.plan.steps), self.plan.steps[index])

    def _approvals(self, view: WorkflowView) -> None:
        """Resume a suspend node whose approval is in the store already."""
        given = self.store.approvals(self.rid)
        for index, step in enumerate(self.plan.steps):
            if not isinstance(step, WaitForApproval) or str(index) in self._resumed:
                continue
            if view.suspended(str(index)) is None:
                continue
            if any(step.accepts(a.step, a.role) for a in given):
                try:
                    self.client.resume(self.name, str(index))
                except TemporaryError:
                    return  # the next read tries again
                self._resumed.add(str(index))
                self.note(NODE_EVENT, f"{step.name}: approval found in the store; resumed")

    def _aborted(self, view: WorkflowView) -> None:
        """An abort in the store stops the workflow; a release rolling back (its guard failed)
        fails an approval the workflow still waits on, so the workflow ends and rolls back."""
        if self._stopped or view.final:
            return
        record = self.store.get_release(self.rid)
        if record is None:
            return
        try:
            if record.phase is Phase.ABORTED:
                self.client.stop(self.name, f"aborted: {record.reason}")
                self._stopped = True
                self.note(NODE_EVENT, f"release aborted ({record.reason}); Workflow stopped")
            elif record.phase is Phase.ROLLING_BACK or record.phase.final:
                for node in view.nodes:
                    if node.type == "Suspend" and node.phase == "Running" and node.step:
                        self.client.fail_node(self.name, node.step, record.reason)
                        self.note(
                            NODE_EVENT,
                            f"{node.display_name}: failed, the release is "
                            f"{record.phase.value} ({record.reason})",
                        )
        except TemporaryError:
            return  # the next read tries again

    def _relay(self) -> None:
        """The pods' own events and gate results, to the progress display."""
        events = self.store.events(self.rid)
        for event in events[self._events_seen :]:
            self.listener.event(event.kind, event.message)
        self._events_seen = len(events)
        results = self.store.gate_results(self.rid, limit=200)
        if len(results) != self._gates_seen and results:
            self._gates_seen = len(results)
            latest = {r.gate: r for r in results}
            self.listener.gates(list(latest.values()))

    def outcome(self, view: WorkflowView) -> Outcome:
        record = self.store.get_release(self.rid)
        if record is not None and record.phase.final:
            return Outcome(self.rid, record.phase, record.reason)
        phase = record.phase if record is not None else Phase.FAILED
        said = f"Workflow {self.name} {view.phase}" + (f": {view.message}" if view.message else "")
        return Outcome(self.rid, phase, f"{said}; the release is {phase.value}")


def _recorded_node_phases(store: Store, release_id: str) -> dict[str, str]:
    """The last phase recorded for each node: a follower started again does not repeat them."""
    found: dict[str, str] = {}
    for event in store.events(release_id):
        if event.kind == NODE_EVENT:
            head = event.message.split(":", 1)[0].split()
            if len(head) == 2:
                found[head[0]] = head[1]
    return found
