"""Live progress of a release: the step, the traffic split, each gate against its threshold."""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .text import lit, styled

if TYPE_CHECKING:
    from gatekeeper.domain.plan import Step
    from gatekeeper.domain.verdicts import GateResult
    from gatekeeper.engine.executor import TargetState

COLORS = {"pass": "green", "warn": "yellow", "fail": "red", "inconclusive": "blue"}


def _value(r: GateResult) -> str:
    if r.value is None:
        return "-"
    if math.isnan(r.value):
        return "NaN"
    if "error ratio" in r.reason:  # the reason names what the value measures
        return f"{r.value * 100:.2f}%"
    return f"{r.value:.4g}"


class ReleaseProgress:
    """A Listener that draws on a terminal, or prints plain lines when there is none."""

    def __init__(self, title: str, console: Console | None = None, plain: bool | None = None):
        self.console = console or Console(stderr=True)
        self.plain = (not self.console.is_terminal) if plain is None else plain
        self.title = title
        self.step_text = "starting"
        self.state: TargetState | None = None
        self.results: dict[str, GateResult] = {}
        self.log: list[str] = []
        self._lock = threading.Lock()
        self._live: Live | None = None

    def __enter__(self) -> ReleaseProgress:
        if not self.plain:
            self._live = Live(self._render(), console=self.console, refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(*exc)

    # -- Listener -------------------------------------------------------------------------

    def step(self, index: int, total: int, step: Step) -> None:
        self.step_text = f"step {index + 1}/{total} {step.name}: {step.describe()}"
        self._update()

    def event(self, kind: str, message: str) -> None:
        if kind in ("step-completed",):
            return
        line = f"{kind}: {message}"
        with self._lock:
            self.log = (self.log + [line])[-8:]
        if self.plain:
            self.console.print(f"[{self.title}] {line}", highlight=False, markup=False)
        self._update()

    def gates(self, results: list[GateResult]) -> None:
        changed = []
        with self._lock:
            for r in results:
                prev = self.results.get(r.gate)
                if prev is None or prev.verdict is not r.verdict:
                    changed.append(r)
                self.results[r.gate] = r
        if self.plain:
            for r in changed:
                self.console.print(
                    f"[{self.title}] gate {r.verdict.value}: {r.reason}",
                    highlight=False,
                    markup=False,
                )
        self._update()

    def traffic(self, state: TargetState) -> None:
        self.state = state
        if self.plain:
            self.console.print(
                f"[{self.title}] traffic: {self._split()}", highlight=False, markup=False
            )
        self._update()

    # -- drawing --------------------------------------------------------------------------

    def _split(self) -> str:
        s = self.state
        if s is None:
            return "-"
        w = s.candidate_weight
        return f"stable {s.stable_version} {100 - w}% | candidate {s.candidate_version or '-'} {w}%"

    def _update(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def _render(self) -> Panel:
        table = Table(expand=True, show_edge=False)
        for col in ("gate", "value", "threshold", "verdict", "reason"):
            table.add_column(col, overflow="fold", ratio=4 if col == "reason" else 1)
        with self._lock:
            results = list(self.results.values())
            log = list(self.log)
        for r in results:
            color = COLORS.get(r.verdict.value, "white")
            threshold = "-" if r.threshold is None else f"{r.threshold:g}"
            table.add_row(
                lit(r.gate), _value(r), threshold, styled(color, r.verdict.value), lit(r.reason)
            )
        bar = Text()
        if self.state is not None:
            w = self.state.candidate_weight
            bar.append("█" * ((100 - w) // 4), style="green")
            bar.append("█" * (w // 4), style="cyan")
            bar.append(f"  {self._split()}")
        return Panel(
            Group(
                Text(self.step_text, style="bold"), bar, table, Text("\n".join(log), style="dim")
            ),
            title=lit(self.title),
        )
