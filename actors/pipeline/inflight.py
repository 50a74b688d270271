"""InFlight: the entries this process has handed to TTSActors and not yet settled.

Owned by the supervisor (not by the StreamReader), so it outlives a StreamReader restart: a new
reader incarnation knows which of its pending entries are still being worked on, and settlements
made while no reader was running are not lost. Actors settle synchronously (no await), so even
an actor that is crashing or being cancelled records what happened to its entry.

This replaces DESIGN.md's "acks over a memory channel": items a crashed reader had received from
such a channel would be gone, and their entries would stay pending (and lease-renewed) forever.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
import trio

from protocols.messages import Ack, Delivery, Release, Settlement

if TYPE_CHECKING:
    from actors.pipeline.prestart import Prestart


class InFlightStatistics(msgspec.Struct, frozen=True):
    running: int
    settled: int
    capacity: int
    idle_actors: int


class InFlight:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._running: dict[str, Delivery] = {}
        self._settled: dict[str, Settlement] = {}
        self._changed = trio.Event()
        self._actors_changed = trio.Event()  # what the reader waits on (``wait_actors``)
        self._new_settlement = trio.Event()  # what the settling loop waits on
        self._idle_actors = 0
        self._prestarts: dict[str, Prestart] = {}
        self._refilling = 0
        self._finishing = 0  # actors whose provider call ended, not yet waiting again
        self._busy_since: dict[int, float] = {}  # actor -> when its current job began
        self.typical_job_s = 1.0  # moving average of how long an actor's job takes
        self._quiet = trio.Event()
        self._quiet.set()

    # -- reader side ------------------------------------------------------------------------------

    def add(self, delivery: Delivery) -> None:
        self._running[delivery.entry_id] = delivery

    def prestarted(self, entry_id: str, prestart: Prestart) -> None:
        """The reader started this entry's job (``actors.pipeline.prestart``): for the actor."""
        self._prestarts[entry_id] = prestart

    def take_prestart(self, entry_id: str) -> Prestart | None:
        return self._prestarts.pop(entry_id, None)

    def forget(self, entry_id: str) -> None:
        """Drop an entry that never reached an actor (it stays in the PEL for redelivery)."""
        self._running.pop(entry_id, None)
        self._prestarts.pop(entry_id, None)
        self._notify()

    def __contains__(self, entry_id: str) -> bool:
        return entry_id in self._running or entry_id in self._settled

    @property
    def free(self) -> int:
        """Actors waiting for a delivery right now: what the reader may read for."""
        return self._idle_actors

    def handed_off(self) -> None:
        """A delivery was received by one of the waiting actors."""
        self._idle_actors -= 1

    def running_ids(self) -> list[str]:
        return list(self._running)

    def settled(self) -> dict[str, Settlement]:
        return dict(self._settled)

    def done(self, entry_ids: list[str]) -> None:
        """Settlements written to Redis: free their slots."""
        for entry_id in entry_ids:
            self._settled.pop(entry_id, None)
        if not self._settled and self._new_settlement.is_set():
            self._new_settlement = trio.Event()
        self._notify()

    async def wait_settled(self) -> None:
        """Until something is settled (callers look at ``settled()``)."""
        if not self._settled:
            await self._new_settlement.wait()

    async def wait_actors(self) -> None:
        """Until an actor becomes free, busy or about to be free (callers bound it)."""
        await self._actors_changed.wait()

    def _actors_notify(self) -> None:
        self._actors_changed.set()
        self._actors_changed = trio.Event()

    async def wait_changed(self) -> None:
        """Until the next add/settle/done (callers bound it with move_on_after)."""
        await self._changed.wait()

    # -- actor side -------------------------------------------------------------------------------

    def actor_waiting(self) -> None:
        """An actor is about to wait for a delivery (the reader may read one for it)."""
        self._idle_actors += 1
        self._notify()
        self._actors_notify()

    def actor_busy(self, actor: int, busy: bool) -> None:
        """An actor received a delivery (``True``) or is done with it (``False``): keeps the
        moving average of a job's duration (``typical_job_s``)."""
        now = trio.current_time()
        if busy:
            self._busy_since[actor] = now
        elif (began := self._busy_since.pop(actor, None)) is not None:
            self.typical_job_s += (now - began - self.typical_job_s) / 16
            self._actors_notify()

    def soon_free(self, within_s: float) -> int:
        """Actors expected to be free within ``within_s``: those whose provider call ended,
        and, when jobs are typically that short, every busy one."""
        if self.typical_job_s <= within_s:
            return len(self._busy_since)
        return self._finishing

    def actor_finishing(self, delta: int) -> None:
        """+1: an actor's provider call ended (it will soon wait for a delivery); -1: it does
        (or stopped). See ``soon_free``."""
        self._finishing += delta
        if delta < 0:
            self._actors_notify()

    def actor_not_waiting(self) -> None:
        """An actor stopped waiting without receiving anything (stopped or cancelled)."""
        self._idle_actors -= 1

    def refilling(self, busy: bool) -> None:
        """An actor's provider call ended (``True``: it is now looking for its next one) or
        its next provider call began (``False``). See ``wait_quiet``."""
        self._refilling += 1 if busy else -1
        if self._refilling == 0:
            self._quiet.set()
        elif self._quiet.is_set():
            self._quiet = trio.Event()

    async def wait_quiet(self) -> None:
        """Until no actor is between provider calls: the moment for deferrable work (storing
        results) that would otherwise delay a provider slot's refill. Callers bound it."""
        await self._quiet.wait()

    def settle(self, entry_id: str, settlement: Settlement) -> None:
        self._prestarts.pop(entry_id, None)
        if self._running.pop(entry_id, None) is None and entry_id not in self._settled:
            return  # the reader already gave it up (released at shutdown)
        self._settled[entry_id] = settlement
        self._notify()
        if not self._new_settlement.is_set():
            self._new_settlement.set()

    def ack(self, entry_id: str) -> None:
        self.settle(entry_id, Ack(entry_id))

    def release(self, entry_id: str, delay: float = 0.0) -> None:
        self.settle(entry_id, Release(entry_id, delay))

    def statistics(self) -> InFlightStatistics:
        return InFlightStatistics(
            len(self._running), len(self._settled), self.capacity, self._idle_actors
        )

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
