"""Ledger: the stream entries this process has handed to its TTS pool, and how each one settled.

The StreamReader adds an entry when it hands it to an actor; the attempt settles it (``Ack`` or
``Release``) once its effect is durable or it is given back; the reader writes the settlements to
Redis and then forgets them. Settling is synchronous (no await), so even an actor that is
crashing or being cancelled records what happened to its entry.

Owned by the Service (not by the StreamReader), so it outlives a StreamReader restart: a new
reader incarnation knows which of its pending entries are still being worked on, and settlements
made while no reader was running are not lost. (A memory channel of acks would lose what a
crashed reader had received, and those entries would stay pending, lease-renewed, forever.)
"""

from __future__ import annotations

import msgspec
import trio

from protocols.messages import Ack, Delivery, Release, Settlement

__all__ = ["Ledger", "LedgerStatistics"]


class LedgerStatistics(msgspec.Struct, frozen=True):
    running: int
    settled: int
    capacity: int


class Ledger:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._running: dict[str, Delivery] = {}
        self._settled: dict[str, Settlement] = {}
        self._changed = trio.Event()
        self._new_settlement = trio.Event()  # what the settling loop waits on

    # -- the reader's side ------------------------------------------------------------------------

    def add(self, delivery: Delivery) -> None:
        self._running[delivery.entry_id] = delivery

    def forget(self, entry_id: str) -> None:
        """Drop an entry that never reached an actor (it stays in the PEL for redelivery)."""
        self._running.pop(entry_id, None)
        self._notify()

    def __contains__(self, entry_id: str) -> bool:
        return entry_id in self._running or entry_id in self._settled

    def running_ids(self) -> list[str]:
        return list(self._running)

    def settled(self) -> dict[str, Settlement]:
        return dict(self._settled)

    def done(self, entry_ids: list[str]) -> None:
        """Settlements written to Redis: forget them."""
        for entry_id in entry_ids:
            self._settled.pop(entry_id, None)
        if not self._settled and self._new_settlement.is_set():
            self._new_settlement = trio.Event()
        self._notify()

    async def wait_settled(self) -> None:
        """Until something is settled (callers look at ``settled()``)."""
        if not self._settled:
            await self._new_settlement.wait()

    async def wait_changed(self) -> None:
        """Until the next add/settle/done (callers bound it with move_on_after)."""
        await self._changed.wait()

    # -- the attempts' side -----------------------------------------------------------------------

    def settle(self, entry_id: str, settlement: Settlement) -> None:
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

    def statistics(self) -> LedgerStatistics:
        return LedgerStatistics(len(self._running), len(self._settled), self.capacity)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
