"""Leader terms and fencing: a controller writes under its term's epoch, and a newer term
makes the store refuse those writes.

Each time a controller becomes the leader it gets a new epoch, higher than any before
(from the lease). The store keeps the highest epoch granted, and every write the
controller makes checks, in the same transaction, that its epoch is still that one. A
controller paused past its lease (a long GC pause, SIGSTOP, a VM migration) may wake up
believing it still leads; its first write is refused and it stops driving releases.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Term:
    """One leader term: the lease's name, who holds it, and the term's epoch."""

    lease: str
    holder: str
    epoch: int

    def __str__(self) -> str:
        return f"{self.holder} (lease {self.lease}, epoch {self.epoch})"


class Deposed(BaseException):
    """The controller's term is over: a newer term holds the lease, or this one lapsed or
    was given up. Raised by a fenced store on any access after that.

    A BaseException on purpose: the executor turns every Exception into a rollback, and a
    deposed controller must not act on the release at all; the new leader resumes it
    where the store says it is.
    """
