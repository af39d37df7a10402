"""The Argo client: submit, read, resume and stop a release's workflow through argo-server.

Every call goes through hera's `WorkflowsService` and is retried with backoff (tenacity) on
what a retry may fix: no connection, a timeout, 5xx (argo-server answers 503 while its own
gRPC side is down). What is left after the retries is a `TemporaryError`; a 4xx is an
`ArgoRefused` naming the call, the object and argo-server's message. The workflow's status
is read into plain dataclasses (`WorkflowView`, `NodeView`) so the engine never touches
hera's models.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import requests
from hera.exceptions import AlreadyExists, HeraException, NotFound
from hera.workflows.models import (
    Workflow,
    WorkflowCreateRequest,
    WorkflowResumeRequest,
    WorkflowStopRequest,
    WorkflowTemplate,
    WorkflowTemplateCreateRequest,
    WorkflowTemplateUpdateRequest,
)
from hera.workflows.service import WorkflowsService
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from gatekeeper.domain.errors import GatekeeperError, TemporaryError

T = TypeVar("T")

FINAL_PHASES = frozenset({"Succeeded", "Failed", "Error"})
DEFAULT_ATTEMPTS = 4
DEFAULT_TIMEOUT_S = 10.0
WATCH_IDLE_S = 30.0  # a watch without an event for this long is opened again


class ArgoRefused(GatekeeperError):
    """argo-server refused a call (4xx other than not found): a retry will not fix it."""


@dataclass(frozen=True)
class NodeView:
    """One node of a workflow, as the engine mirrors it."""

    id: str
    display_name: str
    template: str  # the template (or the referenced template) it runs
    type: str  # Pod, Suspend, Steps, DAG, Retry, Skipped...
    phase: str  # Pending, Running, Succeeded, Failed, Error, Skipped, Omitted
    message: str
    step: str | None  # the `step` parameter: a plan index, `guard` or `rollback`

    @property
    def final(self) -> bool:
        return self.phase in ("Succeeded", "Failed", "Error", "Skipped", "Omitted")


@dataclass(frozen=True)
class WorkflowView:
    """A workflow's phase, message and nodes."""

    name: str
    namespace: str
    phase: str  # "" until the controller first sees it
    message: str
    nodes: tuple[NodeView, ...]
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        return self.phase in FINAL_PHASES

    def suspended(self, step: str) -> NodeView | None:
        """The running suspend node of plan step ``step``, if the workflow waits on it."""
        for node in self.nodes:
            if node.type == "Suspend" and node.step == step and node.phase == "Running":
                return node
        return None


_STATUS = re.compile(r"status code (\d{3})")


def status_of(exc: HeraException) -> int:
    """The HTTP status behind hera's exception: its class's code, else (hera maps only some
    codes to classes; a 503 is a bare HeraException) the one its message names."""
    code = getattr(type(exc), "status_code", None)
    if isinstance(code, int):
        return code
    found = _STATUS.search(str(exc))
    return int(found.group(1)) if found else 0


def _temporary(exc: BaseException) -> bool:
    """What a retry may fix: no connection, a timeout, 429, 5xx (argo-server answers 503 while
    its gateway's own gRPC connection is down, as after a restart)."""
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return True
    if isinstance(exc, HeraException):
        code = status_of(exc)
        return code == 429 or code >= 500
    return isinstance(exc, requests.HTTPError)


class ArgoClient:
    """argo-server at ``server`` (http[s]://host:port), in ``namespace``, with a bearer token."""

    def __init__(
        self,
        server: str,
        namespace: str,
        token: str | None = None,
        *,
        verify: bool | str = True,
        attempts: int = DEFAULT_ATTEMPTS,
        backoff_s: float = 0.5,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if not server.startswith(("http://", "https://")):
            raise GatekeeperError(f"argo-server URL {server!r} must start with http:// or https://")
        self.server = server.rstrip("/") + "/"
        self.namespace = namespace
        self._attempts = max(1, attempts)
        self._backoff_s = backoff_s
        self._lock = threading.Lock()
        self._streams: list[requests.Response] = []
        session = requests.Session()
        session.verify = verify
        self._timeout_s = timeout_s
        session.request = _with_timeout(session.request, timeout_s)  # type: ignore[method-assign]
        self._service = WorkflowsService(
            host=self.server,
            token=token,
            namespace=namespace,
            verify_ssl=bool(verify),
            session=session,
        )
        if isinstance(verify, str):  # a CA bundle: hera passes verify_ssl to each request
            self._service.verify_ssl = verify  # type: ignore[assignment]

    def close(self) -> None:
        self._service.close()  # type: ignore[no-untyped-call]
        with self._lock:
            streams, self._streams = self._streams, []
        for stream in streams:  # ends a watch blocked on its stream
            stream.close()

    def watch(self, name: str, changed: Callable[[], None], stop: threading.Event) -> None:
        """Follows argo-server's watch stream of the workflow (`/api/v1/workflow-events`),
        calling ``changed`` on each event, until ``stop`` is set, the stream ends or
        :meth:`close`; a stream that cannot be opened or breaks is a TemporaryError."""
        url = f"{self.server}api/v1/workflow-events/{self.namespace}"
        params = {"listOptions.fieldSelector": f"metadata.name={name}"}
        headers = {"Authorization": self._service.token} if self._service.token else {}
        session = requests.Session()
        try:
            response = session.get(
                url,
                params=params,
                headers=headers,
                stream=True,
                verify=self._service.verify_ssl,
                timeout=(self._timeout_s, WATCH_IDLE_S),
            )
        except requests.RequestException as e:
            session.close()
            raise TemporaryError(f"argo-server {self.server}: cannot watch {name}: {e}") from e
        with self._lock:
            self._streams.append(response)
        try:
            if response.status_code != 200:
                raise TemporaryError(
                    f"argo-server {self.server}: cannot watch {name}: "
                    f"{response.status_code} {response.text[:200]}"
                )
            for line in response.iter_lines():
                if stop.is_set():
                    return
                if line:
                    changed()
        except (requests.RequestException, AttributeError, OSError, ValueError) as e:
            if not stop.is_set():  # closed under it: the follower is done
                raise TemporaryError(f"argo-server {self.server}: watch of {name}: {e}") from e
        finally:
            with self._lock:
                if response in self._streams:
                    self._streams.remove(response)
            response.close()
            session.close()

    # -- calls ------------------------------------------------------------------------------

    def version(self) -> str:
        return str(self._call("read argo-server's version", self._service.get_version).version)

    def ensure_template(self, template: dict[str, Any]) -> str:
        """Creates the WorkflowTemplate, or updates it when it exists; returns 'created',
        'updated' or 'unchanged'."""
        name = str(template["metadata"]["name"])
        what = f"WorkflowTemplate {self.namespace}/{name}"
        try:
            current = self._call(
                f"read {what}",
                lambda: self._service.get_workflow_template(name, namespace=self.namespace),
            )
        except NotFound:
            model = WorkflowTemplate.model_validate(template)
            self._call(
                f"create {what}",
                lambda: self._service.create_workflow_template(
                    WorkflowTemplateCreateRequest(template=model), namespace=self.namespace
                ),
            )
            return "created"
        wanted = WorkflowTemplate.model_validate(template)
        if _spec_of(current) == _spec_of(wanted):
            return "unchanged"
        wanted.metadata.resource_version = current.metadata.resource_version
        self._call(
            f"update {what}",
            lambda: self._service.update_workflow_template(
                name, WorkflowTemplateUpdateRequest(template=wanted), namespace=self.namespace
            ),
        )
        return "updated"

    def submit(self, workflow: dict[str, Any]) -> tuple[WorkflowView, bool]:
        """Creates the workflow; when one of that name exists already (a second submit of the
        same release) returns it instead. The flag says whether it was created now."""
        name = str(workflow["metadata"]["name"])
        model = Workflow.model_validate(workflow)
        try:
            created = self._call(
                f"submit Workflow {self.namespace}/{name}",
                lambda: self._service.create_workflow(
                    WorkflowCreateRequest(workflow=model), namespace=self.namespace
                ),
            )
            return _view(created, self.namespace), True
        except AlreadyExists:
            found = self.status(name)
            if found is None:
                raise TemporaryError(
                    f"Workflow {self.namespace}/{name} exists, then did not: try again"
                ) from None
            return found, False

    def status(self, name: str) -> WorkflowView | None:
        """The workflow's phase and nodes; None when there is no such workflow."""
        try:
            found = self._call(
                f"read Workflow {self.namespace}/{name}",
                lambda: self._service.get_workflow(name, namespace=self.namespace),
            )
        except NotFound:
            return None
        return _view(found, self.namespace)

    def resume(self, name: str, step: str) -> None:
        """Resumes the suspend node of plan step ``step`` (an approval)."""
        selector = f"inputs.parameters.step.value={step}"
        self._call(
            f"resume step {step} of Workflow {self.namespace}/{name}",
            lambda: self._service.resume_workflow(
                name,
                WorkflowResumeRequest(node_field_selector=selector),
                namespace=self.namespace,
            ),
        )

    def fail_node(self, name: str, step: str, message: str) -> None:
        """Fails the suspend node of plan step ``step`` (a rejection): the workflow fails and
        its exit handler rolls back."""
        selector = f"inputs.parameters.step.value={step}"
        self._call(
            f"reject step {step} of Workflow {self.namespace}/{name}",
            lambda: self._service.stop_workflow(
                name,
                WorkflowStopRequest(node_field_selector=selector, message=message),
                namespace=self.namespace,
            ),
        )

    def stop(self, name: str, message: str) -> None:
        """Stops the workflow: running steps end and the exit handler runs (a rollback)."""
        self._call(
            f"stop Workflow {self.namespace}/{name}",
            lambda: self._service.stop_workflow(
                name, WorkflowStopRequest(message=message), namespace=self.namespace
            ),
        )

    # -- retries ----------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        def give_up(state: RetryCallState) -> T:
            exc = state.outcome.exception() if state.outcome else None
            raise TemporaryError(
                f"argo-server {self.server}: cannot {what} after {state.attempt_number} "
                f"attempts: {_said(exc)}",
                delay=self._backoff_s * 4,
            ) from exc

        retrying = Retrying(
            retry=retry_if_exception(_temporary),
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=self._backoff_s, max=self._backoff_s * 8),
            retry_error_callback=give_up,
            reraise=False,
        )
        try:
            return retrying(fn)
        except (NotFound, AlreadyExists):
            raise
        except HeraException as e:
            raise ArgoRefused(f"argo-server {self.server}: cannot {what}: {_said(e)}") from e


def _with_timeout(request: Callable[..., Any], timeout_s: float) -> Callable[..., Any]:
    def send(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", timeout_s)
        return request(*args, **kwargs)

    return send


def _said(exc: BaseException | None) -> str:
    if exc is None:
        return "no answer"
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _spec_of(template: WorkflowTemplate) -> Any:
    return template.spec.model_dump(by_alias=True, exclude_none=True) if template.spec else None


def _view(workflow: Workflow, namespace: str) -> WorkflowView:
    status = workflow.status
    nodes: list[NodeView] = []
    for node_id, node in sorted(((status.nodes or {}) if status else {}).items()):
        params = {p.name: p.value for p in ((node.inputs.parameters or []) if node.inputs else [])}
        ref = node.template_ref.template if node.template_ref else None
        nodes.append(
            NodeView(
                id=node_id,
                display_name=node.display_name or node.name or node_id,
                template=ref or node.template_name or "",
                type=str(node.type or ""),
                phase=str(node.phase or ""),
                message=node.message or "",
                step=str(params["step"]) if params.get("step") is not None else None,
            )
        )
    return WorkflowView(
        name=workflow.metadata.name or "",
        namespace=namespace,
        phase=str(status.phase or "") if status else "",
        message=(status.message or "") if status else "",
        nodes=tuple(nodes),
        annotations=dict(workflow.metadata.annotations or {}),
    )
