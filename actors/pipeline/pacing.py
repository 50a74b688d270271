"""Pacing: what the TTS pool's actors are doing right now, for the stages that must not slow a
provider slot's refill.

- The StreamReader reads only for actors waiting for a delivery (``free``), and waits a moment
  for actors about to be free (``soon_free``) so one read and one batch start serve them all.
- Deferrable work (the Storer's batches, the event writes) waits until no actor is between two
  provider calls (``wait_quiet``): one event loop runs every stage, and the refills come first.

Owned by the Service; actors report into it, and it holds no job state (that is the ``Ledger``).
"""

from __future__ import annotations

import msgspec
import trio

__all__ = ["Pacing", "PacingStatistics"]

#: weight of the newest job in the moving average of a job's duration
_AVERAGE_WEIGHT = 1 / 16


class PacingStatistics(msgspec.Struct, frozen=True):
    idle_actors: int
    busy_actors: int
    typical_job_s: float


class Pacing:
    def __init__(self) -> None:
        self._idle_actors = 0
        self._actors_changed = trio.Event()  # what the reader waits on (``wait_actors``)
        self._refilling = 0
        self._finishing = 0  # actors whose provider call ended, not yet waiting again
        self._busy_since: dict[int, float] = {}  # actor -> when its current job began
        self.typical_job_s = 1.0  # moving average of how long an actor's job takes
        self._quiet = trio.Event()
        self._quiet.set()

    # -- the reader's side ------------------------------------------------------------------------

    @property
    def free(self) -> int:
        """Actors waiting for a delivery right now: what the reader may read for."""
        return self._idle_actors

    def handed_off(self) -> None:
        """A delivery was received by one of the waiting actors."""
        self._idle_actors -= 1

    def soon_free(self, within_s: float) -> int:
        """Actors expected to be free within ``within_s``: those whose provider call ended,
        and, when jobs are typically that short, every busy one."""
        if self.typical_job_s <= within_s:
            return len(self._busy_since)
        return self._finishing

    async def wait_actors(self) -> None:
        """Until an actor becomes free, busy or about to be free (callers bound it)."""
        await self._actors_changed.wait()

    # -- the actors' side -------------------------------------------------------------------------

    def actor_waiting(self) -> None:
        """An actor is about to wait for a delivery (the reader may read one for it)."""
        self._idle_actors += 1
        self._actors_notify()

    def actor_not_waiting(self) -> None:
        """An actor stopped waiting without receiving anything (stopped or cancelled)."""
        self._idle_actors -= 1

    def actor_busy(self, actor: int, busy: bool) -> None:
        """An actor received a delivery (``True``) or is done with it (``False``): keeps the
        moving average of a job's duration (``typical_job_s``)."""
        now = trio.current_time()
        if busy:
            self._busy_since[actor] = now
        elif (began := self._busy_since.pop(actor, None)) is not None:
            self.typical_job_s += (now - began - self.typical_job_s) * _AVERAGE_WEIGHT
            self._actors_notify()

    def actor_finishing(self, delta: int) -> None:
        """+1: an actor's provider call ended (it will soon wait for a delivery); -1: it does
        (or stopped). See ``soon_free``."""
        self._finishing += delta
        if delta < 0:
            self._actors_notify()

    def refilling(self, busy: bool) -> None:
        """An actor's provider call ended (``True``: it is now looking for its next one) or
        its next provider call began (``False``). See ``wait_quiet``."""
        self._refilling += 1 if busy else -1
        if self._refilling == 0:
            self._quiet.set()
        elif self._quiet.is_set():
            self._quiet = trio.Event()

    # -- deferrable work --------------------------------------------------------------------------

    async def wait_quiet(self) -> None:
        """Until no actor is between provider calls: the moment for deferrable work (storing
        results) that would otherwise delay a provider slot's refill. Callers bound it."""
        await self._quiet.wait()

    def statistics(self) -> PacingStatistics:
        return PacingStatistics(self._idle_actors, len(self._busy_since), self.typical_job_s)

    def _actors_notify(self) -> None:
        self._actors_changed.set()
        self._actors_changed = trio.Event()
