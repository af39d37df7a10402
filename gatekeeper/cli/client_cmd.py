"""`gatekeeper submit | status` and `gatekeeper remote ...`: the CLI as a client of
`gatekeeper serve`.

`submit SPEC --server URL --wait` exits like `gatekeeper run`: 0 promoted, 3 rolled back,
4 stopped, 1 failed or an error; 2 when the server refused the request (nothing started).
The token: GATEKEEPER_TOKEN, or ``--token-file``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from gatekeeper.domain.errors import GatekeeperError, InvalidInput, TemporaryError

from .api_client import ApiClient, read_token
from .root import EXIT_ERROR, EXIT_INVALID, app
from .text import lit, print_problem, styled

remote_app = typer.Typer(
    help="Act on the releases of a `gatekeeper serve`: history, approve, reject, abort, "
    "retry, rollback.",
    no_args_is_help=True,
)

SERVER = typer.Option(
    ..., "--server", envvar="GATEKEEPER_SERVER", help="The service's URL, e.g. http://gk:8080."
)
TOKEN_FILE = typer.Option(
    None, "--token-file", help="A file holding the bearer token; else GATEKEEPER_TOKEN."
)
JSON = typer.Option(False, "--json", help="Print JSON.")
WAIT_RETRY_S = 300.0  # how long --wait rides out a server that does not answer


def _fail(e: GatekeeperError) -> typer.Exit:
    if isinstance(e, InvalidInput):
        print_problem(Console(stderr=True), "refused", e)
        return typer.Exit(EXIT_INVALID)
    print_problem(Console(stderr=True), "error", e)
    return typer.Exit(EXIT_ERROR)


def _client(server: str, token_file: Path | None) -> ApiClient:
    return ApiClient(server, read_token(token_file))


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2)
    sys.stdout.write("\n")


def read_spec(path: Path) -> dict[str, Any]:
    """The spec file as the server takes it: a gates file it names is put in the spec (the
    server reads no files)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise InvalidInput(f"release file {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise InvalidInput(f"release file {path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise InvalidInput(f"release file {path}: a release spec is a mapping")
    gates = data.get("gates")
    if isinstance(gates, str) and gates != "default":
        gates_path = Path(gates) if Path(gates).is_absolute() else path.parent / gates
        try:
            data["gates"] = yaml.safe_load(gates_path.read_text(encoding="utf-8"))
        except OSError as e:
            raise InvalidInput(f"{path}: gates file {gates_path}: {e.strerror}") from e
        except yaml.YAMLError as e:
            raise InvalidInput(f"{path}: gates file {gates_path}: not valid YAML: {e}") from e
    return data


def _line(release: dict[str, Any]) -> str:
    where = f" at {release['current_step']}" if release.get("current_step") else ""
    stalled = f"; stalled: {release['stalled']}" if release.get("stalled") else ""
    return f"{release['release_id']}: {release['phase']}{where}: {release['reason']}{stalled}"


def _outcome(release: dict[str, Any]) -> int:
    from gatekeeper.domain.exits import Exit
    from gatekeeper.domain.release import Phase

    code = {
        Phase.PROMOTED.value: Exit.PROMOTED,
        Phase.ROLLED_BACK.value: Exit.ROLLED_BACK,
        Phase.ABORTED.value: Exit.STOPPED,
    }.get(release["phase"], Exit.ERROR)
    return int(code)


def follow(client: ApiClient, release_id: str, interval_s: float, timeout_s: float | None) -> Any:
    """Poll the release until it ends, printing each change; rides out a server that is
    restarting or failing over (up to WAIT_RETRY_S without an answer)."""
    err = Console(stderr=True)
    shown = ""
    started = time.monotonic()
    unanswered: float | None = None
    while True:
        try:
            release = client.json("GET", f"/api/v1/releases/{release_id}")
            unanswered = None
        except TemporaryError as e:
            unanswered = unanswered or time.monotonic()
            if time.monotonic() - unanswered > WAIT_RETRY_S:
                raise
            err.print(lit(f"waiting for the server: {e}"), highlight=False)
            time.sleep(max(interval_s, 2.0))
            continue
        line = _line(release)
        if line != shown:
            err.print(lit(line), highlight=False, soft_wrap=True)
            shown = line
        if release["final"]:
            return release
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            raise GatekeeperError(f"{release_id}: not ended after {timeout_s:g}s ({line})")
        time.sleep(interval_s)


def _end(release: dict[str, Any], as_json: bool) -> None:
    code = _outcome(release)
    if as_json:
        _print_json({**_summary(release), "exit_code": code})
    else:
        color = {0: "green", 3: "red", 4: "yellow"}.get(code, "red")
        Console().print(
            f"{styled(color, release['phase'])}: {lit(release['reason'])}", highlight=False
        )
    raise typer.Exit(code)


def _summary(release: dict[str, Any]) -> dict[str, Any]:
    keys = ("release_id", "app", "environment", "version", "stable_version", "strategy",
            "phase", "reason", "submitted_by", "created_at", "updated_at")  # fmt: skip
    return {k: release.get(k) for k in keys}


@app.command("submit")
def submit_cmd(
    spec: Path = typer.Argument(..., help="Release spec YAML."),
    server: str = SERVER,
    token_file: Path | None = TOKEN_FILE,
    wait: bool = typer.Option(False, "--wait", help="Follow the release to its end."),
    key: str | None = typer.Option(
        None,
        "--idempotency-key",
        envvar="GATEKEEPER_IDEMPOTENCY_KEY",
        help="The same key returns the same release (a CI job retried submits once).",
    ),
    interval: float = typer.Option(2.0, "--interval", help="--wait: seconds between reads."),
    timeout: float | None = typer.Option(None, "--timeout", help="--wait: give up (exit 1)."),
    as_json: bool = JSON,
) -> None:
    """Submit a release to `gatekeeper serve`. With --wait, exit like `gatekeeper run`:
    0 promoted, 3 rolled back, 4 stopped, 1 failed; 2 refused."""
    try:
        data = read_spec(spec)
        with _client(server, token_file) as client:
            headers = {"Idempotency-Key": key} if key else None
            response = client.request("POST", "/api/v1/releases", json=data, headers=headers)
            release = response.json()
            said = "submitted" if response.status_code == 201 else "submitted before"
            Console(stderr=True).print(
                lit(f"{said}: {_line(release)}"), highlight=False, soft_wrap=True
            )
            if wait:
                release = follow(client, release["release_id"], interval, timeout)
    except GatekeeperError as e:
        raise _fail(e) from e
    if wait:
        _end(release, as_json)
    if as_json:
        _print_json(_summary(release))
    else:
        Console().print(lit(release["release_id"]), highlight=False)


@app.command("status")
def status_cmd(
    release_id: str = typer.Argument(..., help="Release id, e.g. shop-production-v2."),
    server: str = SERVER,
    token_file: Path | None = TOKEN_FILE,
    watch: bool = typer.Option(
        False, "--watch", help="Follow it to its end, then exit like `gatekeeper run`."
    ),
    interval: float = typer.Option(2.0, "--interval", help="--watch: seconds between reads."),
    as_json: bool = JSON,
) -> None:
    """A release on `gatekeeper serve`: its phase, steps, approvals and latest events."""
    try:
        with _client(server, token_file) as client:
            if watch:
                follow(client, release_id, interval, None)
            release = client.json("GET", f"/api/v1/releases/{release_id}")
    except GatekeeperError as e:
        raise _fail(e) from e
    if as_json:
        _print_json(release)
    else:
        _show(release)
    if watch:
        raise typer.Exit(_outcome(release))


def _show(release: dict[str, Any]) -> None:
    console = Console()
    console.print(lit(_line(release)), highlight=False, soft_wrap=True)
    table = Table(title=lit(f"{release['app']} {release['stable_version']} -> "
                             f"{release['version']}: {release['strategy']}"))  # fmt: skip
    for col in ("#", "step", "status", "what"):
        table.add_column(col)
    for step in release["steps"]:
        table.add_row(
            str(step["index"]), lit(step["name"]), lit(step["status"]), lit(step["description"])
        )
    console.print(table)
    for a in release["approvals"]:
        console.print(lit(f"approved {a['step']} by {a['approver']} ({a['role']}) {a['at']}"))
    for e in release["events"][-10:]:
        console.print(lit(f"{e['at']} {e['kind']}: {e['message']}"), highlight=False)


@remote_app.command("history")
def history_cmd(
    server: str = SERVER,
    token_file: Path | None = TOKEN_FILE,
    app_name: str | None = typer.Option(None, "--app"),
    environment: str | None = typer.Option(None, "--environment"),
    phase: str | None = typer.Option(None, "--phase"),
    limit: int = typer.Option(100, "--limit"),
    as_json: bool = JSON,
) -> None:
    """Releases on the server, newest first."""
    params = {"app": app_name, "environment": environment, "phase": phase, "limit": limit}
    try:
        with _client(server, token_file) as client:
            releases = client.json("GET", "/api/v1/releases", params=params)["releases"]
    except GatekeeperError as e:
        raise _fail(e) from e
    if as_json:
        _print_json(releases)
        return
    table = Table()
    for col in ("release", "strategy", "phase", "reason", "submitted_by", "created_at"):
        table.add_column(col, overflow="fold")
    for r in releases:
        table.add_row(*(lit(r[k] or "") for k in ("release_id", "strategy", "phase", "reason",
                                                  "submitted_by", "created_at")))  # fmt: skip
    Console().print(table)


def act_on(
    server: str, token_file: Path | None, release_id: str, action: str, body: dict[str, Any]
) -> Any:
    """POST an action on a release (``approve``/``reject`` take ``step`` in ``body``) and
    answer the release as the server returns it; GatekeeperError (InvalidInput when the
    server refused) otherwise. `gatekeeper approve|reject|abort --server` can call this."""
    step = body.pop("step", None)
    path = f"/api/v1/releases/{release_id}/" + (f"steps/{step}/{action}" if step else action)
    with _client(server, token_file) as client:
        return client.json("POST", path, json=body)


def _act(
    server: str, token_file: Path | None, release_id: str, action: str, body: dict[str, Any]
) -> Any:
    try:
        return act_on(server, token_file, release_id, action, body)
    except GatekeeperError as e:
        raise _fail(e) from e


@remote_app.command("approve")
def approve_cmd(
    release_id: str = typer.Argument(...),
    step: str = typer.Argument(..., help="The approval step, e.g. approve-promote."),
    comment: str = typer.Option("", "--comment"),
    server: str = SERVER,
    token_file: Path | None = TOKEN_FILE,
) -> None:
    """Approve a step (as the token's principal; four eyes: not the submitter)."""
    release = _act(server, token_file, release_id, "approve", {"step": step, "comment": comment})
    Console().print(lit(_line(release)), highlight=False)


@remote_app.command("reject")
def reject_cmd(
    release_id: str = typer.Argument(...),
    step: str = typer.Argument(..., help="The approval step, e.g. approve-promote."),
    comment: str = typer.Option("", "--comment"),
    server: str = SERVER,
    token_file: Path | None = TOKEN_FILE,
) -> None:
    """Reject a step: the release is stopped and its traffic goes back to stable."""
    release = _act(server, token_file, release_id, "reject", {"step": step, "comment": comment})
    Console().print(lit(_line(release)), highlight=False)


@remote_app.command("abort")
def abort_cmd(
    release_id: str = typer.Argument(...),
    reason: str = typer.Option(..., "--reason"),
    server: str = SERVER,
    token_file: Path | None = TOKEN_FILE,
) -> None:
    """Abort a release: all traffic back to stable."""
    release = _act(server, token_file, release_id, "abort", {"reason": reason})
    Console().print(lit(_line(release)), highlight=False)


@remote_app.command("retry")
def retry_cmd(
    release_id: str = typer.Argument(...),
    comment: str = typer.Option("", "--comment"),
    server: str = SERVER,
    token_file: Path | None = TOKEN_FILE,
) -> None:
    """Drive a stalled release again from the step it stopped at."""
    release = _act(server, token_file, release_id, "retry", {"comment": comment})
    Console().print(lit(_line(release)), highlight=False)


@remote_app.command("rollback")
def rollback_cmd(
    release_id: str = typer.Argument(...),
    reason: str = typer.Option("", "--reason"),
    server: str = SERVER,
    token_file: Path | None = TOKEN_FILE,
) -> None:
    """Roll a promoted release back to the version it replaced (a revert release)."""
    release = _act(server, token_file, release_id, "rollback", {"reason": reason})
    Console().print(lit(_line(release)), highlight=False)


@remote_app.command("whoami")
def whoami_cmd(server: str = SERVER, token_file: Path | None = TOKEN_FILE) -> None:
    """The principal and roles of the token."""
    try:
        with _client(server, token_file) as client:
            me = client.json("GET", "/api/v1/whoami")
    except GatekeeperError as e:
        raise _fail(e) from e
    Console().print(lit(f"{me['principal']} ({', '.join(me['roles'])}) via {me['via']}"))
