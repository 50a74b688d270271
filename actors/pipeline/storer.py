"""Storer: the TTS pool's second stage. The TTSActors hand it the audio they produced and are
free for their next job at once; it stores what has piled up as one batch:

files (one worker thread; one disk flush for the data, one for the renames) -> Postgres (one
atomic, pipelined statement batch finishing every job) -> events -> release the attempts'
single-flight locks (one Redis round trip; only now, so a job waiting on a lock finds the audio
row) -> settle the attempts (the StreamReader acks). Up to ``CONCURRENT`` batches are under way
at once.

Every step is idempotent (content-addressed files, compare-and-set finish), so a batch that is
stored twice (a crash between commit and ack) doubles nothing. A job whose file or row fails with
a typed error is retried later or failed, alone; an unexpected error gives the whole batch back
for redelivery (its locks are released) and crashes the Storer, which its supervisor restarts.
Postgres away is neither: the audio is paid for, so the batch waits for the store to come back
(backoff up to ``CHORUS_OUTAGE_BACKOFF_S``) and is then stored; only a stop gives it back.

Batches wait (at most ``DEFER_S``) until no actor is between two provider calls: one event loop
runs both stages, and the refills of the provider slots come first. On stop, everything the
actors produced is stored before the Storer returns (it stops after them).
"""

from __future__ import annotations

import logging

import msgspec
import trio

from actors.pipeline.attempt import Attempt, release_flights
from actors.pipeline.outcomes import Outcomes, is_outage
from actors.pipeline.pacing import Pacing
from protocols.errors import ChorusError
from protocols.events import NO_EVENTS
from protocols.faults import FaultPlan
from protocols.messages import Ack, Delivery, Job, NewAudio, Settlement
from protocols.ports import BlobStore, EventSink, JobStore
from protocols.settings import Settings

log = logging.getLogger("chorus.storer")

#: most jobs stored in one batch
BATCH = 128
#: batches stored at once (a batch mostly waits: for the disk, then for Postgres)
CONCURRENT = 2
#: produced jobs waiting for the Storer before the actors wait (backpressure)
QUEUE = 128
#: how long a batch waits for the provider slots to be refilled first
DEFER_S = 0.01


class Produced(msgspec.Struct, frozen=True):
    """Audio a TTSActor produced for an attempt: new bytes to write, or an existing file to
    point at. The attempt carries what the job holds in Redis (released once it is stored)."""

    attempt: Attempt
    #: None: the provider was called before the job's start was known (``TTSActor``): the
    #: start (``attempt.start``) is checked here, before the job is finished
    job: Job | None
    audio: NewAudio
    data: bytes | None = None
    extension: str = ""

    @property
    def delivery(self) -> Delivery:
        return self.attempt.delivery


class StorerStatistics(msgspec.Struct, frozen=True):
    succeeded: int
    failed: int
    retried: int
    batches: int
    store_waits: int = 0  # retries of a batch's Postgres step while the store was away


class Storer:
    def __init__(
        self,
        *,
        settings: Settings,
        produced: trio.MemoryReceiveChannel[Produced],
        pacing: Pacing,
        store: JobStore,
        blobs: BlobStore,
        events: EventSink = NO_EVENTS,
    ) -> None:
        self.settings = settings
        self._produced = produced
        self._pacing = pacing
        self._store = store
        self._blobs = blobs
        self._faults = settings.faults or FaultPlan()
        self._outcomes = Outcomes(settings, store, events, self._faults)
        self._batches = 0
        self._stop = trio.Event()
        self._waits = 0  # times a batch waited for the store to come back

    def statistics(self) -> StorerStatistics:
        o = self._outcomes
        return StorerStatistics(o.succeeded, o.failed, o.retried, self._batches, self._waits)

    async def run(self, stop: trio.Event, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self._run(stop, task_status)
        except BaseExceptionGroup as group:  # a batch's own exception, not wrapped
            if len(group.exceptions) != 1:
                raise
            raise group.exceptions[0] from group.exceptions[0].__cause__

    async def _run(self, stop: trio.Event, task_status: trio.TaskStatus[None]) -> None:
        self._stop = stop
        limiter = trio.Semaphore(CONCURRENT)
        async with self._produced.clone() as produced, trio.open_nursery() as nursery:
            idle = trio.CancelScope()

            async def interrupt_on_stop() -> None:
                await stop.wait()
                idle.cancel()  # ends a wait for work, never a batch being stored

            async def store(batch: list[Produced]) -> None:
                try:
                    await self._store_batch(batch)
                finally:
                    limiter.release()

            nursery.start_soon(interrupt_on_stop)
            task_status.started()
            while not stop.is_set():
                with idle:
                    first = await produced.receive()
                if idle.cancelled_caught:
                    break
                idle = trio.CancelScope()
                with trio.move_on_after(DEFER_S):
                    await self._pacing.wait_quiet()
                await limiter.acquire()  # meanwhile the next batch grows
                nursery.start_soon(store, [first, *self._take(produced, BATCH - 1)])
            for _ in range(CONCURRENT):  # the batches under way, then what is left
                await limiter.acquire()
            # the actors stopped before us: what they produced is all in the channel
            await self._drain(produced)
            nursery.cancel_scope.cancel()

    @staticmethod
    def _take(produced: trio.MemoryReceiveChannel[Produced], most: int) -> list[Produced]:
        out: list[Produced] = []
        while len(out) < most:
            try:
                out.append(produced.receive_nowait())
            except trio.WouldBlock:
                break
        return out

    async def _drain(self, produced: trio.MemoryReceiveChannel[Produced]) -> None:
        while batch := self._take(produced, BATCH):
            await self._store_batch(batch)

    async def _store_batch(self, batch: list[Produced]) -> None:
        self._batches += 1
        try:
            settlements = await self._persist(batch)
        except BaseException as exc:
            # unexpected, or cancelled: the batch goes back for redelivery (stored or not,
            # storing again doubles nothing); an Exception is noted on the jobs, in parallel
            for p in batch:
                p.attempt.settle(p.attempt.release_later(
                    self._outcomes.backoff(p.delivery) if isinstance(exc, Exception) else 0.0
                ))
            if isinstance(exc, Exception):
                message = f"{type(exc).__name__}: {exc}"
                async with trio.open_nursery() as nursery:
                    for p in batch:
                        nursery.start_soon(self._outcomes.note, p.delivery, "crash", message)
            raise
        finally:
            # after the audio rows are committed (or not): a waiter then finds the row
            await release_flights([p.attempt for p in batch])
        for p, settlement in zip(batch, settlements, strict=True):
            p.attempt.settle(settlement)

    async def _persist(self, batch: list[Produced]) -> list[Settlement]:
        """Check the starts still unknown, write the new files, then finish the jobs in one
        transaction."""
        batch, settlements = await self._check_starts(batch)
        todo = [i for i in range(len(batch)) if i not in settlements]
        writes = [i for i in todo if batch[i].data is not None]
        written = await self._blobs.put_many(
            [(batch[i].audio.cache_key, batch[i].extension, batch[i].data or b"") for i in writes]
        )
        audio: dict[int, NewAudio | ChorusError] = {i: batch[i].audio for i in todo}
        for i, path in zip(writes, written, strict=True):
            audio[i] = path if isinstance(path, ChorusError) else msgspec.structs.replace(
                batch[i].audio, path=path
            )
        finishing = [i for i in todo if isinstance(audio[i], NewAudio)]
        done: dict[int, Job | ChorusError] = await self._finish_waiting(
            {i: (batch[i].job.id, audio[i]) for i in finishing}  # type: ignore[union-attr,misc]
        )
        errors = [(i, batch[i].delivery, a) for i, a in audio.items()
                  if isinstance(a, ChorusError)]
        errors += [(i, batch[i].delivery, d) for i, d in done.items()
                   if isinstance(d, ChorusError)]
        if errors:
            settlements |= await self._outcomes.job_errors(errors)
        for i in finishing:
            job, a = done[i], audio[i]
            if isinstance(job, Job) and isinstance(a, NewAudio):
                self._outcomes.publish_succeeded(job, a)
                await self._faults.hit("tts.after_store_before_ack")
                self._outcomes.succeeded += 1
                settlements[i] = Ack(batch[i].delivery.entry_id)
        return [settlements[i] for i in range(len(batch))]

    async def _finish_waiting(
        self, items: dict[int, tuple[str, NewAudio]]
    ) -> dict[int, Job | ChorusError]:
        """``finish_jobs``; the jobs it could not finish because Postgres was away are tried
        again, with backoff, until the store is back: their audio is paid for and written,
        and held here (bounded: the actors wait once the Storer's queue is full). Given up
        only when the Storer is asked to stop (then released without counting a delivery)."""
        done: dict[int, Job | ChorusError] = {}
        todo = dict(items)
        tries = 0
        while todo:
            finished = await self._store.finish_jobs(list(todo.values()))
            done |= dict(zip(todo, finished, strict=True))
            todo = {i: todo[i] for i, d in zip(todo, finished, strict=True) if is_outage(d)}
            if todo and not await self._wait_for_store(tries, len(todo)):
                break
            tries += 1
        return done

    async def _wait_for_store(self, tries: int, jobs: int) -> bool:
        """One backoff while the store is away; False once the Storer is asked to stop."""
        if self._stop.is_set():
            return False
        self._waits += 1
        delay = min(self.settings.outage_backoff_s, 0.2 * 2**tries)
        if tries == 0:
            log.warning("store away: %d job(s) with their audio wait for it to come back", jobs)
        with trio.move_on_after(delay):
            await self._stop.wait()
        return not self._stop.is_set()

    async def _start_waiting(self, p: Produced) -> tuple[Job | None, object]:
        """A job whose start failed because Postgres was away, started again once it is
        back (its audio is paid for); the last error is raised if the Storer stops first."""
        tries = 0
        while True:
            try:
                return await self._store.start_job_cached(p.delivery.job.job_id, p.audio.cache_key)
            except ChorusError as exc:
                if not is_outage(exc) or not await self._wait_for_store(tries, 1):
                    raise
            tries += 1

    async def _check_starts(
        self, batch: list[Produced]
    ) -> tuple[list[Produced], dict[int, Settlement]]:
        """Each job started while its provider call ran: running, it goes on to be stored;
        unknown or already finished, its entry is acked (the audio is dropped); a start
        that failed is retried later, as any job error."""
        out, settled = list(batch), {}
        errors: list[tuple[int, Delivery, ChorusError]] = []
        for i, p in enumerate(batch):
            if p.job is not None:
                continue
            start = p.attempt.start
            assert start is not None, "produced before its start without a start on its way"
            try:
                try:
                    job, _ = await start.get(2 * self.settings.db_timeout_s)
                except ChorusError as exc:
                    if not is_outage(exc):
                        raise
                    job, _ = await self._start_waiting(p)
            except ChorusError as exc:
                errors.append((i, p.delivery, exc))
                continue
            if job is None:
                log.warning("entry %s names unknown job %s: dropped", p.delivery.entry_id,
                            p.delivery.job.job_id)
                settled[i] = Ack(p.delivery.entry_id)
            elif job.status.terminal:
                self._outcomes.publish_final(job)
                settled[i] = Ack(p.delivery.entry_id)
            else:
                out[i] = msgspec.structs.replace(
                    p, job=job,
                    audio=msgspec.structs.replace(p.audio, charge=job.characters),
                )
        if errors:
            settled |= await self._outcomes.job_errors(errors)
        return out, settled
