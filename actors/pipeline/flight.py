"""Flight: what one job holds across worker processes while it is generated.

- its cache key's single-flight lock: one generation per key at a time, anywhere; a job that
  finds the lock taken waits for it to go and then looks in the cache;
- a slot of the provider account's global semaphore, for the provider call only.

Both are first tried in one Redis script, usually by the StreamReader for the whole batch it
read (``first_tries``, or the locking read: ``FirstTry``), else by the actor while Postgres
starts the job (``begin``); the slot only with the lock, so a job waiting for another's result
never holds a slot. Whatever is held is given back by ``release`` / ``release_all`` (the lock
once the audio row is committed, by the Storer; an unused slot at once). While held, both are
renewed by the coordinator's keeper task (``Coordinator.keeping``), which also gives back slots
and adds counts off the critical path: a flight starts no task of its own.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import trio

from protocols.errors import ChorusError, ProviderUnavailable
from protocols.redis.coordination import Coordinator, Lock

log = logging.getLogger("chorus.flight")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class FirstTry:
    """A flight's first try at its lock and a slot, made before the job reached its actor."""

    lock: Lock
    slot: str | None  # a provider slot taken with the lock
    #: a storybook line whose book had no cancel marker when the locking read took it
    #: (``LockingRead.book_live``): the job was not cancelled before then
    book_live: bool = False


async def first_tries(
    coord: Coordinator, jobs: Sequence[tuple[str, str]], *, shared_account: bool
) -> list[FirstTry]:
    """``Flight.begin`` for many (cache key, job id) at once: one Redis round trip."""
    locks = [coord.lock(key, job_id) for key, job_id in jobs]
    tokens = [coord.slot_token() if shared_account else None for _ in jobs]
    taken = await coord.acquire_many(list(zip(locks, tokens, strict=True)))
    return [FirstTry(lock, token if ok else None)
            for lock, token, ok in zip(locks, tokens, taken, strict=True)]


async def abandon(coord: Coordinator, tries: Sequence[FirstTry]) -> None:
    """Give back first tries whose jobs will not run here after all (bounded, best effort)."""
    await coord.release_locks([t.lock for t in tries])
    await coord.release_slot(*(t.slot for t in tries if t.slot is not None))


class Flight:
    def __init__(
        self, coord: Coordinator, *, key: str, job_id: str, shared_account: bool,
        wait_s: float, first_try: FirstTry | None = None,
    ) -> None:
        self._coord = coord
        self._lock = first_try.lock if first_try is not None else coord.lock(key, job_id)
        self._shared = shared_account
        self._wait_s = wait_s
        self._first: bool | None = None  # the first try's answer (None: not tried)
        self._slot: str | None = None  # taken with the first try, not used yet
        self.waited = False  # another worker was generating the same key
        #: the provider found an earlier attempt's audio (its history) instead of a paid call:
        #: counted as ``history_reuses``, not ``provider_calls``
        self.from_history = False
        if first_try is not None:  # ``begin`` was done for us (the StreamReader's batch)
            self._first = first_try.lock.held
            self._slot = first_try.slot

    async def begin(self) -> None:
        """First try at the lock and (with it) a slot. A Redis failure here is only logged:
        ``own`` tries again, and raises then."""
        token = self._coord.slot_token() if self._shared else None
        try:
            if await self._lock.acquire_with_slot(token):
                self._slot = token
            self._first = self._lock.held
        except ChorusError as exc:
            log.debug("single-flight lock %s not tried: %s", self._lock.key, exc)

    async def own(self, look_again: Callable[[], Awaitable[T | None]]) -> T | None:
        """Hold the lock (renewed by the keeper) and return None; or, while another
        worker holds it, wait for it to go and return what ``look_again`` (the cache) finds."""
        first, self._first = self._first, None
        deadline = trio.current_time() + self._wait_s
        while not (first if first is not None else await self._lock.acquire()):
            first = None
            self._give_back_slot()  # never hold a provider slot while waiting for another job
            if not self.waited:
                self.waited = True
                await self._coord.count("flight_waits")
            await self._lock.wait_released(max(0.0, deadline - trio.current_time()))
            if (found := await look_again()) is not None:
                return found
            if trio.current_time() >= deadline:
                raise ProviderUnavailable(
                    "an identical job is still being generated elsewhere; retrying later"
                )
        self._lock.keep_alive()
        if self.waited or self._lock.recently_done:
            # a holder may have stored it between our cache look-up and the lock
            return await look_again()
        return None

    @asynccontextmanager
    async def provider_slot(self) -> AsyncIterator[None]:
        """One of the account's slots for the provider call (the one taken at ``begin``, or
        waited for); given back off the critical path. Counts the call with the release
        (``provider_calls``, or ``history_reuses`` when ``from_history`` was set inside)."""
        if not self._shared:
            yield
        else:
            held, self._slot = self._slot, None
            async with self._coord.slot(self._wait_s, held=held):
                yield
        counter = "history_reuses" if self.from_history else "provider_calls"
        if self._lock.held:
            self._lock.count_on_release = counter  # one round trip with the release
        else:
            self._coord.count_soon(counter)

    def _give_back_slot(self) -> None:
        if self._slot is not None:
            self._coord.release_slot_soon(self._slot)
        self._slot = None

    async def release(self) -> None:
        """Give back whatever is held (the lock: compare-and-delete, bounded)."""
        self._give_back_slot()
        await self._lock.release()


async def release_all(flights: Sequence[Flight]) -> None:
    """``Flight.release`` for many flights: their locks in one Redis round trip, their unused
    slots in one more."""
    by_coordinator: dict[int, list[Flight]] = {}
    for flight in flights:
        by_coordinator.setdefault(id(flight._coord), []).append(flight)
    for group in by_coordinator.values():
        coord = group[0]._coord
        slots = [f._slot for f in group if f._slot is not None]
        for flight in group:
            flight._slot = None
        await coord.release_locks([f._lock for f in group])
        await coord.release_slot(*slots)
