"""Prestarter: the StreamReader starts the jobs it read as one batch before handing them to
the actors: one Postgres transaction marks them all running (and looks up their cached audio),
while one Redis script makes each job's first try at its single-flight lock and a provider slot.
With three slots refilled together this replaces three of each round trip with one, on the
path between one provider call and the next.

Purely an optimisation: when Postgres fails, nothing is recorded (the locks taken are given
back) and each actor starts its job itself, with its own error handling. A job started here is
exactly what its actor would have started (same compare-and-set).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import trio

from actors.pipeline.flight import FirstTry, abandon, first_tries
from actors.pipeline.inflight import InFlight
from protocols.domain.cachekey import job_cache_key
from protocols.errors import ChorusError, StoreUnavailable
from protocols.messages import Audio, Delivery, Job
from protocols.ports import JobQueue, JobStore
from protocols.redis.coordination import Coordinator
from protocols.settings import Settings

log = logging.getLogger("chorus.prestart")

#: background starts made within this long go to Postgres as one statement
START_LINGER_S = 0.003


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


@dataclass(frozen=True, slots=True)
class Prestart:
    """A delivery's job as started by the StreamReader, for its actor."""

    key: str  # the job's cache key
    start: PendingStart
    first_try: FirstTry | None  # None: not tried (Redis failed), the actor tries itself


class Prestarter:
    def __init__(
        self,
        *,
        settings: Settings,
        store: JobStore,
        inflight: InFlight,
        provider_name: str,
        shared_account: bool,
        open_coordinator: Callable[[], AbstractAsyncContextManager[Coordinator]] | None,
    ) -> None:
        self.settings = settings
        self._store = store
        self._inflight = inflight
        self._provider_name = provider_name
        self._shared = shared_account
        self.open_coordinator = open_coordinator
        self._queued: list[tuple[tuple[str, str], PendingStart]] = []  # background starts
        self._writing = False

    async def read(
        self, coord: Coordinator, queue: JobQueue, consumer: str, count: int
    ) -> tuple[list[Delivery], dict[str, FirstTry]] | None:
        """The locking read: up to ``count`` new entries and their first tries at lock and
        slot in one Redis round trip (without blocking). None when it failed: the caller
        reads the plain way."""
        try:
            rows = await coord.read_and_try(
                queue.keys.jobs, queue.keys.group, consumer, count,
                shared_account=self._shared,
            )
        except ChorusError as exc:
            log.debug("locking read failed (reading the plain way): %s", exc)
            return None
        if not rows:
            return [], {}
        deliveries = await queue.decode([(entry_id, fields) for entry_id, fields, _, _ in rows])
        tries = {entry_id: FirstTry(lock, slot)
                 for entry_id, _, lock, slot in rows if lock is not None}
        kept = {d.entry_id for d in deliveries}
        dropped = [t for e, t in tries.items() if e not in kept]  # dead-lettered
        if dropped:
            await abandon(coord, dropped)
        return deliveries, {e: t for e, t in tries.items() if e in kept}

    async def start(
        self, coord: Coordinator | None, deliveries: list[Delivery],
        tries_made: dict[str, FirstTry] | None = None,
        background: trio.Nursery | None = None,
    ) -> None:
        """Start the deliveries' jobs and make their first tries at lock and slot (unless
        ``tries_made`` by a locking read); what was done is left in ``InFlight`` for the actor
        that receives each one. With every first try made and a ``background`` nursery, the
        Postgres start goes on there while the entries are handed out (the actors wait for
        it, or call the provider meanwhile where that is safe: ``TTSActor``)."""
        if not deliveries:
            return
        keys = [job_cache_key(d.job, self._provider_name, self.settings.cache_scope)
                for d in deliveries]
        jobs = [(key, d.job.job_id) for key, d in zip(keys, deliveries, strict=True)]
        tries: list[FirstTry | None] = [
            tries_made.get(d.entry_id) if tries_made is not None else None for d in deliveries
        ]
        untried = [i for i, t in enumerate(tries) if t is None]
        pending = [PendingStart() for _ in deliveries]
        items = [(d.job.job_id, key) for d, key in zip(deliveries, keys, strict=True)]
        if background is not None and not untried:
            for i, delivery in enumerate(deliveries):
                self._inflight.prestarted(
                    delivery.entry_id, Prestart(keys[i], pending[i], tries[i])
                )
            self._queued.extend(zip(items, pending, strict=True))
            if not self._writing:
                background.start_soon(self._write_starts)
                self._writing = True
            return

        async def try_locks(coord: Coordinator) -> None:
            try:
                made = await first_tries(
                    coord, [jobs[i] for i in untried], shared_account=self._shared
                )
            except ChorusError as exc:  # the actors try again (and raise then)
                log.debug("first tries at %d lock(s) failed: %s", len(untried), exc)
                return
            for i, first_try in zip(untried, made, strict=True):
                tries[i] = first_try

        async with trio.open_nursery() as nursery:
            if coord is not None and untried:
                nursery.start_soon(try_locks, coord)
            started = await self._start_jobs(items, pending)
        if not started:
            if coord is not None:
                await abandon(coord, [t for t in tries if t is not None])
            return
        for i, delivery in enumerate(deliveries):
            self._inflight.prestarted(delivery.entry_id, Prestart(keys[i], pending[i], tries[i]))

    async def _write_starts(self) -> None:
        """The background starts: what piles up within ``START_LINGER_S`` goes as one
        statement (the actors do not wait for it: they call the provider meanwhile, and the
        Storer checks each start before finishing the job)."""
        try:
            while self._queued:
                await trio.sleep(START_LINGER_S)
                queued, self._queued = self._queued, []
                await self._start_jobs([i for i, _ in queued], [p for _, p in queued])
        except BaseException:
            queued, self._queued = self._queued, []
            for _, p in queued:
                p.fail(StoreUnavailable("the batch start was cut short"))
            raise
        finally:
            self._writing = False

    async def _start_jobs(self, items: list[tuple[str, str]], pending: list[PendingStart]
                          ) -> bool:
        """One statement for the batch; each pending start gets its answer (or the error,
        also when this is cancelled: an actor never waits for nothing)."""
        try:
            started = await self._store.start_jobs_cached(items)
        except ChorusError as exc:  # each actor handles it (or starts its job itself)
            log.info("could not start %d job(s) as a batch: %s", len(items), exc)
            for p in pending:
                p.fail(exc)
            return False
        except BaseException:
            for p in pending:
                p.fail(StoreUnavailable("the batch start was cut short"))
            raise
        for p, value in zip(pending, started, strict=True):
            p.set(value)
        return True

    async def give_back(self, coord: Coordinator | None, entry_ids: list[str]) -> None:
        """Entries read but not handed to an actor (stopping): give back their first tries."""
        tries = [p.first_try for e in entry_ids
                 if (p := self._inflight.take_prestart(e)) is not None and p.first_try]
        if coord is not None and tries:
            await abandon(coord, tries)  # type: ignore[arg-type]
