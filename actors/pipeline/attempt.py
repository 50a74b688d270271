"""Attempt: one delivery of one job, from the moment the StreamReader reads it to its settlement.

A job's life in this process is one ``Attempt`` per delivery (docs/ARCHITECTURE.md, "One job's
path"):

1. the StreamReader reads the entry and makes the attempt, with the job's cache key;
2. the Prestarter may start it with the batch it was read in: ``start`` (the job's
   ``start_job_cached`` answer, possibly still on its way) and ``first_try`` (its first try at
   the single-flight lock and a provider slot, from the same Redis script as the read);
3. a TTSActor receives it over the deliveries channel, turns the first try into the attempt's
   ``flight`` (lock and slot, ``actors.pipeline.flight``), calls the provider and hands the
   audio to the Storer;
4. whoever finishes it (the actor for a cached, failed or retried job; the Storer once the
   audio row is committed) releases the flight and ``settle``s it in the ``Ledger``, from where
   the StreamReader acks or releases the entry.

Everything an attempt holds is on it, so a stage that gives it up (a crash, a stop) knows what to
give back.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import trio

from actors.pipeline.flight import FirstTry, Flight, release_all
from actors.pipeline.ledger import Ledger
from protocols.errors import ChorusError, StoreUnavailable
from protocols.messages import Ack, Audio, Delivery, Job, Release, Settlement, SpeechJob

__all__ = ["Attempt", "PendingStart", "release_flights"]


class PendingStart:
    """A job's start (``start_job_cached``'s answer), possibly still on its way."""

    def __init__(self) -> None:
        self._done = trio.Event()
        self._value: tuple[Job | None, Audio | None] = (None, None)
        self._error: ChorusError | None = None
        self._then: list[Callable[[Job | None], None]] = []

    def then(self, callback: Callable[[Job | None], None]) -> None:
        """Call ``callback(job)`` once the start succeeded (at once if it has): no task."""
        if not self._done.is_set():
            self._then.append(callback)
        elif self._error is None:
            callback(self._value[0])

    @property
    def ready(self) -> bool:
        return self._done.is_set()

    def set(self, value: tuple[Job | None, Audio | None]) -> None:
        self._value = value
        self._done.set()
        callbacks, self._then = self._then, []
        for callback in callbacks:
            callback(value[0])

    def fail(self, error: ChorusError) -> None:
        self._error = error
        self._done.set()

    async def get(self, limit_s: float | None = None) -> tuple[Job | None, Audio | None]:
        """The start's answer (its error raised); ``StoreUnavailable`` if it is not known
        within ``limit_s``."""
        with trio.move_on_after(limit_s if limit_s is not None else math.inf):
            await self._done.wait()
        if not self._done.is_set():
            raise StoreUnavailable("the job's start did not come back in time")
        if self._error is not None:
            raise self._error
        return self._value


class Attempt:
    """One delivery attempt of a job (see the module docstring for its life)."""

    __slots__ = ("delivery", "first_try", "flight", "key", "start", "_ledger")

    def __init__(self, delivery: Delivery, key: str, ledger: Ledger) -> None:
        self.delivery = delivery
        #: the job's cache key (settled at submit; computed for entries older than that)
        self.key = key
        #: the batch start made by the StreamReader (None: the actor starts the job itself)
        self.start: PendingStart | None = None
        #: the first try at lock and slot made with the read (None: not tried)
        self.first_try: FirstTry | None = None
        #: what the attempt holds in Redis while it runs (set by its actor)
        self.flight: Flight | None = None
        self._ledger = ledger

    @property
    def entry_id(self) -> str:
        return self.delivery.entry_id

    @property
    def job(self) -> SpeechJob:
        return self.delivery.job

    def settle(self, settlement: Settlement) -> None:
        """The attempt is over: its entry is to be acked or released (synchronous, so a
        crashing or cancelled stage still records it)."""
        self._ledger.settle(self.entry_id, settlement)

    def ack(self) -> Ack:
        return Ack(self.entry_id)

    def release_later(self, delay: float = 0.0) -> Release:
        return Release(self.entry_id, delay)

    async def release_flight(self) -> None:
        """Give back the lock and slot it holds (bounded, best effort)."""
        flight, self.flight = self.flight, None
        if flight is not None:
            await flight.release()


async def release_flights(attempts: Sequence[Attempt]) -> None:
    """``Attempt.release_flight`` for many: their locks in one Redis round trip, their unused
    slots in one more."""
    flights = [a.flight for a in attempts if a.flight is not None]
    for attempt in attempts:
        attempt.flight = None
    if flights:
        await release_all(flights)
