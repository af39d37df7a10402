"""Exit codes, written once: `gatekeeper run` (and `submit --wait`) and `gatekeeper step run`.

Scripts and Argo's retryStrategy act on them; the README has the same tables.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI reads these codes without loading the models
    from .release import Phase


class Exit(IntEnum):
    PROMOTED = 0  # run: the only success; step run: the step is done (or was done already)
    ERROR = 1  # an internal error
    INVALID = 2  # bad input; nothing was written or started
    ROLLED_BACK = 3  # run: rolled back; step run: a gate failed, the release rolls back
    STOPPED = 4  # stopped: aborted by a person or the hold timed out
    STEP_FAILED = 5  # step run: the step cannot reach its goal; the release rolls back
    TEMPORARY = 75  # step run: worth retrying (EX_TEMPFAIL); nothing is decided yet

    DONE = 0


def for_phase(phase: Phase) -> Exit:
    """The exit code of `gatekeeper run` for the phase a release ended in."""
    from .release import Phase

    return {
        Phase.PROMOTED: Exit.PROMOTED,
        Phase.ROLLED_BACK: Exit.ROLLED_BACK,
        Phase.ABORTED: Exit.STOPPED,
    }.get(phase, Exit.ERROR)
