"""The Dockerfile's rules, read from the file: two stages, a numeric non-root user, exec forms,
nothing run at run time, and the paths and ports the Helm chart relies on."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
CHART_VALUES = REPO / "charts" / "release-gatekeeper" / "values.yaml"
VENV = "/opt/gatekeeper"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str

    @property
    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction; None for the shell form."""
        try:
            found = json.loads(self.value)
        except ValueError:
            return None
        if isinstance(found, list) and all(isinstance(x, str) for x in found):
            return found
        return None


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for match in re.finditer(r"(\w+)=(\S+)", instruction.value):
                found[match[1]] = match[2]
        return found


def instructions(text: str) -> list[Instruction]:
    """Logical instructions: continuation lines joined, comments and blank lines dropped."""
    found: list[Instruction] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, value = current.partition(" ")
        found.append(Instruction(keyword.upper(), " ".join(value.split())))
        current = ""
    assert not current, f"the Dockerfile ends inside a continued instruction: {current!r}"
    return found


def stages(text: str) -> tuple[list[Instruction], list[Stage]]:
    """Instructions before the first FROM (global ARGs), and each stage."""
    head: list[Instruction] = []
    found: list[Stage] = []
    for instruction in instructions(text):
        if instruction.keyword == "FROM":
            words = instruction.value.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            found.append(Stage(base=words[0], name=name))
        elif found:
            found[-1].instructions.append(instruction)
        else:
            head.append(instruction)
    return head, found


@pytest.fixture(scope="module")
def parsed() -> tuple[list[Instruction], list[Stage]]:
    return stages(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def runtime(parsed: tuple[list[Instruction], list[Stage]]) -> Stage:
    return parsed[1][-1]


@pytest.fixture(scope="module")
def builder(parsed: tuple[list[Instruction], list[Stage]]) -> Stage:
    return parsed[1][0]


@pytest.fixture(scope="module")
def chart_values() -> dict[str, object]:
    values: dict[str, object] = yaml.safe_load(CHART_VALUES.read_text())
    return values


def test_the_parser_joins_continued_lines_and_tells_exec_from_shell_form() -> None:
    found = instructions('# c\nRUN a \\\n  # inner\n  && b\nCMD ["x", "y"]\nCMD x y\n')
    assert [i.keyword for i in found] == ["RUN", "CMD", "CMD"]
    assert found[0].value == "a && b"
    assert found[1].exec_form == ["x", "y"]
    assert found[2].exec_form is None


def test_the_image_is_built_in_a_builder_stage_and_run_from_a_second_on_the_same_base(
    parsed: tuple[list[Instruction], list[Stage]],
) -> None:
    head, found = parsed
    assert len(found) == 2, [s.base for s in found]
    builder, runtime = found
    assert builder.name == "builder"
    assert builder.base == runtime.base == "${PYTHON_IMAGE}", (
        "both stages must share the base: the virtual environment links to its interpreter"
    )
    args = {i.value.split("=", 1)[0]: i.value.split("=", 1)[1] for i in head if i.keyword == "ARG"}
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", args["PYTHON_IMAGE"]), args


def test_the_builder_makes_a_wheel_and_installs_it_with_the_service_extras(builder: Stage) -> None:
    run = " ".join(i.value for i in builder.all("RUN"))
    assert f"python3 -m venv {VENV}" in run
    assert "pip wheel" in run
    extras = re.search(r"release_gatekeeper-\*\.whl\)\[([\w,]+)\]", run)
    assert extras is not None, run
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    wanted = set(pyproject["project"]["optional-dependencies"]) - {"dev"}
    assert set(extras[1].split(",")) == wanted


def test_the_builder_copies_every_package_the_project_ships(builder: Stage) -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    copied = {i.value.split()[0] for i in builder.all("COPY")}
    assert packages <= copied, packages - copied
    assert {"pyproject.toml", "README.md"} <= {
        w for i in builder.all("COPY") for w in i.value.split()
    }


def test_the_runtime_stage_runs_nothing_and_takes_only_the_environment_from_the_builder(
    runtime: Stage,
) -> None:
    assert runtime.all("RUN") == [], "no shell is needed at run time, nor at the runtime stage"
    assert runtime.all("ADD") == []
    copies = runtime.all("COPY")
    assert copies and all("--from=builder" in c.value for c in copies), copies
    assert any(c.value.endswith(f"{VENV} {VENV}") for c in copies), copies


def test_the_runtime_user_is_numeric_not_root_and_the_charts(
    runtime: Stage, chart_values: dict[str, object]
) -> None:
    users = runtime.all("USER")
    assert len(users) == 1, users
    match = re.fullmatch(r"(\d+):(\d+)", users[0].value)
    assert match is not None, f"USER {users[0].value}: give numeric uid:gid (runAsNonRoot checks)"
    uid, gid = int(match[1]), int(match[2])
    assert uid != 0 and gid != 0
    pod = chart_values["podSecurityContext"]
    assert isinstance(pod, dict)
    assert (pod["runAsUser"], pod["runAsGroup"], pod["runAsNonRoot"]) == (uid, gid, True)
    chown = [c for c in runtime.all("COPY") if "--chown=" in c.value]
    assert all(f"--chown={uid}:{gid}" in c.value for c in chown), chown


def test_entrypoint_and_cmd_are_exec_form_running_the_environments_gatekeeper(
    runtime: Stage,
) -> None:
    (entrypoint,) = runtime.all("ENTRYPOINT")
    (cmd,) = runtime.all("CMD")
    assert entrypoint.exec_form == [f"{VENV}/bin/gatekeeper"], entrypoint.value
    assert cmd.exec_form == ["serve", "--config", "/etc/gatekeeper/config.yaml"], cmd.value


@pytest.mark.parametrize("keyword", ["ENTRYPOINT", "CMD", "HEALTHCHECK", "SHELL"])
def test_no_stage_uses_the_shell_form_of_an_instruction_that_has_an_exec_form(
    parsed: tuple[list[Instruction], list[Stage]], keyword: str
) -> None:
    for stage in parsed[1]:
        for instruction in stage.all(keyword):
            assert instruction.exec_form is not None, f"{keyword} {instruction.value}"


def test_the_process_writes_only_to_tmp_and_its_data_folder(
    runtime: Stage, chart_values: dict[str, object]
) -> None:
    env = runtime.env()
    assert env["HOME"] == "/tmp"
    assert env["GATEKEEPER_HOME"] == "/var/lib/gatekeeper"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PATH"].split(":")[0] == f"{VENV}/bin", "`gatekeeper` (the step pods' command)"
    security = chart_values["securityContext"]
    assert isinstance(security, dict)
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}


def test_the_exposed_port_is_the_charts_server_port(
    runtime: Stage, chart_values: dict[str, object]
) -> None:
    (expose,) = runtime.all("EXPOSE")
    server = chart_values["server"]
    assert isinstance(server, dict)
    assert int(expose.value) == server["port"]


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, near enough for these paths: a path is left out when it or a folder
    above it matches a pattern (`**/` matches at any depth); a later `!pattern` takes it back."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        bare = pattern.lstrip("!").rstrip("/")
        if bare.startswith("**/"):
            names = [p.rsplit("/", 1)[-1] for p in prefixes]
            matched = any(fnmatch.fnmatch(name, bare[3:]) for name in names)
        else:
            matched = any(fnmatch.fnmatch(prefix, bare) for prefix in prefixes)
        if matched:
            ignored = not pattern.startswith("!")
    return ignored


def test_dockerignore_keeps_local_state_out_and_the_sources_in() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for kept in ["pyproject.toml", "README.md", "gatekeeper/cli/main.py", "workflows/compiler.py"]:
        assert not _ignored(kept, patterns), kept
    for left_out in [
        ".git/HEAD",
        ".venv/bin/python",
        "tests/unit/test_dockerfile.py",
        "gatekeeper/__pycache__/x.pyc",
        "release_gatekeeper.egg-info/PKG-INFO",
        "charts/release-gatekeeper/values.yaml",
        "gatekeeper.db",
    ]:
        assert _ignored(left_out, patterns), left_out
