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
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager

import trio

from actors.pipeline.attempt import Attempt, PendingStart
from actors.pipeline.flight import FirstTry, abandon, first_tries
from protocols.errors import ChorusError, StoreUnavailable
from protocols.messages import Delivery
from protocols.ports import JobQueue, JobStore
from protocols.redis.coordination import Coordinator
from protocols.redis.queue import lane_streams
from protocols.settings import Settings

__all__ = ["Prestarter"]

log = logging.getLogger("chorus.prestart")

#: background starts made within this long go to Postgres as one statement
START_LINGER_S = 0.003


class Prestarter:
    def __init__(
        self,
        *,
        settings: Settings,
        store: JobStore,
        shared_account: bool,
        open_coordinator: Callable[[], AbstractAsyncContextManager[Coordinator]] | None,
    ) -> None:
        self.settings = settings
        self._store = store
        self._shared = shared_account
        self.open_coordinator = open_coordinator
        self._queued: list[tuple[tuple[str, str], PendingStart]] = []  # background starts
        self._writing = False

    async def read(
        self, coord: Coordinator, queue: JobQueue, consumer: str, count: int
    ) -> tuple[list[Delivery], dict[str, FirstTry]] | None:
        """The locking read: up to ``count`` new entries, interactive lane first and the batch
        lane filling the rest, and their first tries at lock and slot in one Redis round trip
        (without blocking). None when it failed: the caller reads the plain way."""
        try:
            rows = await coord.read_and_try(
                [(lane.stream, lane.prefix) for lane in lane_streams(queue.keys)],
                queue.keys.group, consumer, count, shared_account=self._shared,
            )
        except ChorusError as exc:
            log.debug("locking read failed (reading the plain way): %s", exc)
            return None
        if not rows:
            return [], {}
        deliveries = await queue.decode([(row.entry_id, row.fields) for row in rows])
        tries = {row.entry_id: FirstTry(row.lock, row.slot, row.book_live)
                 for row in rows if row.lock is not None}
        kept = {d.entry_id for d in deliveries}
        dropped = [t for e, t in tries.items() if e not in kept]  # dead-lettered
        if dropped:
            await abandon(coord, dropped)
        return deliveries, {e: t for e, t in tries.items() if e in kept}

    async def start(
        self, coord: Coordinator | None, attempts: Sequence[Attempt],
        tries_made: dict[str, FirstTry] | None = None,
        background: trio.Nursery | None = None,
    ) -> None:
        """Start the attempts' jobs and make their first tries at lock and slot (unless
        ``tries_made`` by a locking read); what was done is left on each attempt
        (``start``, ``first_try``) for the actor that receives it. With every first try made
        and a ``background`` nursery, the Postgres start goes on there while the attempts are
        handed out (the actors wait for it, or call the provider meanwhile where that is safe:
        ``TTSActor``)."""
        if not attempts:
            return
        tries: list[FirstTry | None] = [
            tries_made.get(a.entry_id) if tries_made is not None else None for a in attempts
        ]
        untried = [i for i, t in enumerate(tries) if t is None]
        pending = [PendingStart() for _ in attempts]
        items = [(a.job.job_id, a.key) for a in attempts]
        if background is not None and not untried:
            for attempt, start, first_try in zip(attempts, pending, tries, strict=True):
                attempt.start, attempt.first_try = start, first_try
            self._queued.extend(zip(items, pending, strict=True))
            if not self._writing:
                background.start_soon(self._write_starts)
                self._writing = True
            return

        async def try_locks(coord: Coordinator) -> None:
            try:
                made = await first_tries(
                    coord, [(items[i][1], items[i][0]) for i in untried],
                    shared_account=self._shared,
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
        for attempt, start, first_try in zip(attempts, pending, tries, strict=True):
            attempt.start, attempt.first_try = start, first_try

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

    async def give_back(self, coord: Coordinator | None, attempts: Sequence[Attempt]) -> None:
        """Attempts read but not handed to an actor (stopping): give back their first tries."""
        tries = [a.first_try for a in attempts if a.first_try is not None]
        for attempt in attempts:
            attempt.first_try = attempt.start = None
        if coord is not None and tries:
            await abandon(coord, tries)
