"""The state file: what the local target runs, kept in ``<state_dir>/target.json``.

The models mirror the file field for field (``extra="forbid"``), so a file written by
any earlier version of this format loads unchanged. The file is replaced atomically:
a reader sees the old content or the new, never half of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator

from gatekeeper.domain.errors import InvalidInput

from .router import write_json_atomic

HOST = "127.0.0.1"  # every version and the router listen on loopback only
STATE_FILE = "target.json"
STATE_FORMAT: Literal[1] = 1
_FROM_FILE = "state file"  # validation context: the data was read from a file

Pid = Annotated[int, Field(gt=0)]
Port = Annotated[int, Field(ge=1, le=65535)]
Percent = Annotated[int, Field(ge=0, le=100)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProcessRecord(_Record):
    """One running version."""

    version: str
    pid: Pid
    port: Port
    command: str  # the template it was started from
    argv: list[str]
    log: str  # file name under the state dir
    started: str | None = None  # the kernel's start time of the pid, to detect pid reuse
    started_at: float = 0.0  # wall clock (seconds since the epoch), for people

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"


class RouterRecord(_Record):
    """The weighted router's process and ports."""

    pid: Pid
    port: Port
    admin_port: Port
    started: str | None = None


class Retiring(_Record):
    """A version that stops once ``not_before`` has passed and no traffic goes to it."""

    version: str
    pid: Pid
    port: Port
    not_before: float  # wall clock (seconds since the epoch)
    started: str | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"


class LocalState(BaseModel):
    """What the target runs; the content of ``target.json``. Changed in place by the target
    (under its lock), so not frozen."""

    model_config = ConfigDict(extra="forbid")

    format: Literal[1] = STATE_FORMAT
    app: str
    router: RouterRecord | None = None
    stable: ProcessRecord | None = None
    candidate: ProcessRecord | None = None
    weight: Percent = 0  # the last weight read from or set on the router
    stable_scale: Percent = 0
    candidate_scale: Percent = 0
    retiring: list[Retiring] = Field(default_factory=list)
    replaced: list[str] = Field(default_factory=list)  # stable versions promoted away from

    @model_validator(mode="before")
    @classmethod
    def _file_names_its_format(cls, data: Any, info: ValidationInfo) -> Any:
        # A file must say which format it is in; a model built in code takes the current one.
        if info.context == _FROM_FILE and isinstance(data, dict) and "format" not in data:
            raise ValueError(f"no format field; expected format {STATE_FORMAT}")
        return data


def save_state(path: Path, state: LocalState) -> None:
    write_json_atomic(path, state.model_dump(mode="json"))


def load_state(path: Path) -> LocalState | None:
    """The state in ``path``, or None when there is no file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return LocalState.model_validate_json(text, context=_FROM_FILE)
    except ValidationError as e:
        raise InvalidInput(
            f"local target state {path} is not valid ({_problems(e)}); stop its processes "
            "and remove the file, or use another state_dir"
        ) from None


def _problems(e: ValidationError) -> str:
    """Each problem as ``field.path: message``, on one line."""
    return "; ".join(
        f"{'.'.join(str(part) for part in err['loc']) or 'file'}: {err['msg']}"
        for err in e.errors(include_url=False)
    )
