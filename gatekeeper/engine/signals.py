"""How a step ends a release early: the exceptions the executor turns into a rollback.

    GateFailed        a gate said fail: roll back (rolled_back)
    AbortedElsewhere  a person aborted the release from another process (aborted)
    RolledBackElsewhere  another process decided the rollback: a guard pod whose gate
                      failed, a rejected approval (rolled_back)
    HoldTimedOut      held longer than the release's hold_timeout (aborted)

StepFailed (domain errors) is a step that could not reach its goal (rolled_back).
"""

from __future__ import annotations


class GateFailed(Exception):
    """A gate said fail: roll back."""


class AbortedElsewhere(Exception):
    """A person aborted the release (`gatekeeper abort`) while this run held it."""


class RolledBackElsewhere(Exception):
    """Another process decided to roll the release back while this one ran a step of it."""


class HoldTimedOut(Exception):
    """Held longer than the release's hold_timeout."""
