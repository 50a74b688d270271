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
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import trio

from actors.flight import FirstTry, abandon, first_tries
from actors.inflight import InFlight
from protocols.cachekey import job_cache_key
from protocols.coordination import Coordinator
from protocols.errors import ChorusError
from protocols.messages import Audio, Delivery, Job
from protocols.ports import JobQueue, JobStore
from protocols.settings import Settings

log = logging.getLogger("chorus.prestart")


@dataclass(frozen=True, slots=True)
class Prestart:
    """A delivery's job as started by the StreamReader, for its actor."""

    key: str  # the job's cache key
    job: Job | None  # as ``start_job_cached`` returned it
    audio: Audio | None
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
    ) -> None:
        """Start the deliveries' jobs (and make their first tries, unless ``tries_made`` by
        a locking read); what was started is left in ``InFlight`` for the actor that
        receives each one."""
        if not deliveries:
            return
        keys = [job_cache_key(d.job, self._provider_name, self.settings.cache_scope)
                for d in deliveries]
        jobs = [(key, d.job.job_id) for key, d in zip(keys, deliveries, strict=True)]
        tries: list[FirstTry | None] = [
            tries_made.get(d.entry_id) if tries_made is not None else None for d in deliveries
        ]
        untried = [i for i, t in enumerate(tries) if t is None]

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

        started: list[tuple[Job | None, Audio | None]] | None = None
        async with trio.open_nursery() as nursery:
            if coord is not None and untried:
                nursery.start_soon(try_locks, coord)
            try:
                started = await self._store.start_jobs_cached(
                    [(d.job.job_id, key) for d, key in zip(deliveries, keys, strict=True)]
                )
            except ChorusError as exc:  # each actor starts its job itself, errors and all
                log.info("could not start %d job(s) as a batch: %s", len(deliveries), exc)
        if started is None:
            if coord is not None and tries:
                await abandon(coord, [t for t in tries if t is not None])
            return
        for i, (delivery, (job, audio)) in enumerate(zip(deliveries, started, strict=True)):
            self._inflight.prestarted(delivery.entry_id, Prestart(keys[i], job, audio, tries[i]))

    async def give_back(self, coord: Coordinator | None, entry_ids: list[str]) -> None:
        """Entries read but not handed to an actor (stopping): give back their first tries."""
        tries = [p.first_try for e in entry_ids
                 if (p := self._inflight.take_prestart(e)) is not None and p.first_try]
        if coord is not None and tries:
            await abandon(coord, tries)  # type: ignore[arg-type]
