"""StreamReader: the bridge from the Redis job stream to the TTSActors.

- Reads only for free actors: COUNT = actors waiting for a delivery (zero-capacity channel).
- Interactive before batch (docs/ARCHITECTURE.md, "Lanes and fairness"): every read takes the
  interactive lane's entries first and fills the rest from the batch lane, so a single job
  never waits behind queued storybook lines. Entries already in hand (``_waiting``: taken back
  at start, reclaimed, or over-read by a blocking read that woke on both lanes) go
  interactive first too, and before a batch entry in hand goes to an actor the interactive
  lane is looked at (not blocking): a job that arrived meanwhile goes first. What a read takes
  beyond the free actors waits in hand, so it cannot get ahead of what arrives later.
- Starts what it read as one batch (``actors.pipeline.prestart``: one Postgres transaction,
  one Redis script for the locks and slots) before handing each entry to an actor.
- On start, takes back its own pending entries (stable consumer name) that no actor is running.
- Renews the lease of running entries every lease/3 (XCLAIM 0 JUSTID: no delivery counted).
- Every ``reclaim_interval`` reclaims entries idle past the lease (cursor-looped XAUTOCLAIM):
  those of crashed workers, and those released for redelivery.
- Dead-letters an entry delivered more than ``max_deliveries`` times, with the reason.
- Writes settlements: acks (XACK + XDEL in one MULTI, only after the result is durable) and
  releases (XCLAIM IDLE, so the entry is reclaimed after the asked delay).
- Graceful stop: no new reads; running jobs get ``shutdown_grace_s`` to finish and be acked;
  the rest is released for immediate redelivery.

A blocked read is never cancelled on a graceful stop: it blocks ``read_block_ms`` at most and
the stop flag is checked between reads (coredis leaks a pool slot per cancelled blocking read).
The queue client is created inside the actor, so a restart discards its pool.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext

import msgspec
import trio

from actors.pipeline.attempt import Attempt
from actors.pipeline.flight import FirstTry
from actors.pipeline.ledger import Ledger
from actors.pipeline.outcomes import job_ended
from actors.pipeline.pacing import Pacing
from actors.pipeline.prestart import Prestarter
from protocols.domain.cachekey import job_cache_key
from protocols.errors import ChorusError, DeliveriesExhausted
from protocols.events import NO_EVENTS, EventKind, job_event, lane_data
from protocols.faults import FaultPlan
from protocols.messages import Ack, Delivery, JobStatus, Lane, Release
from protocols.metrics import instruments as metrics
from protocols.ports import EventSink, JobQueue, JobStore
from protocols.redis.coordination import Coordinator
from protocols.settings import Settings

log = logging.getLogger("chorus.reader")

RECLAIM_BATCH = 32
GATHER_S = 0.002  # at most this long a read waits for actors about to be free


class ReaderStatistics(msgspec.Struct, frozen=True):
    read: int
    recovered: int
    reclaimed: int
    acked: int
    released: int
    dead_lettered: int
    waiting_dispatch: int


class StreamReader:
    def __init__(
        self,
        *,
        settings: Settings,
        consumer: str,
        open_queue: Callable[[], AbstractAsyncContextManager[JobQueue]],
        store: JobStore,
        ledger: Ledger,
        pacing: Pacing,
        deliveries: trio.MemorySendChannel[Attempt],
        provider_name: str,
        events: EventSink = NO_EVENTS,
        prestarter: Prestarter | None = None,
    ) -> None:
        self.settings = settings
        self.consumer = consumer
        self._open_queue = open_queue
        self._store = store
        self._ledger = ledger
        self._pacing = pacing
        self._deliveries = deliveries
        self._provider_name = provider_name
        self._events = events
        self._prestarter = prestarter
        self._coord: Coordinator | None = None
        self._background: trio.Nursery | None = None
        self._faults = settings.faults or FaultPlan()
        self._waiting: collections.deque[Delivery] = collections.deque()
        self._counts = collections.Counter[str]()

    def statistics(self) -> ReaderStatistics:
        c = self._counts
        return ReaderStatistics(
            c["read"], c["recovered"], c["reclaimed"], c["acked"], c["released"],
            c["dead_lettered"], len(self._waiting),
        )

    def _attempt(self, delivery: Delivery) -> Attempt:
        key = job_cache_key(delivery.job, self._provider_name, self.settings.cache_scope)
        return Attempt(delivery, key, self._ledger)

    @property
    def _lease_ms(self) -> int:
        return int(self.settings.lease_s * 1000)

    async def run(self, stop: trio.Event, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        opener = self._prestarter.open_coordinator if self._prestarter is not None else None
        async with opener() if opener is not None else nullcontext() as coord:
            self._coord = coord
            try:
                await self._run(stop, task_status)
            finally:
                self._coord = None

    async def _run(self, stop: trio.Event, task_status: trio.TaskStatus[None]) -> None:
        self._waiting.clear()  # entries taken by a previous incarnation are still in our PEL
        async with self._open_queue() as queue, self._deliveries.clone() as deliveries:
            await queue.ensure_group()
            await self._recover_own(queue)
            task_status.started()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._settle_loop, queue)
                nursery.start_soon(self._renew_loop, queue)
                nursery.start_soon(self._reclaim_loop, queue)
                self._background = nursery  # batch starts still on their way
                await self._read_loop(queue, deliveries, stop)
                await self._drain(queue)
                nursery.cancel_scope.cancel()

    # -- reading and dispatch ----------------------------------------------------------------------

    async def _read_loop(
        self, queue: JobQueue, deliveries: trio.MemorySendChannel[Attempt], stop: trio.Event
    ) -> None:
        while not stop.is_set():
            if self._pacing.free == 0:
                with trio.move_on_after(self.settings.read_block_ms / 1000):
                    await self._pacing.wait_actors()
                continue
            if self._waiting:
                delivery = self._take_waiting()
                if delivery.job.lane is Lane.batch:
                    # an interactive job that arrived meanwhile goes before batch entries
                    # already in hand
                    fresh = await queue.read_new(
                        self.consumer, self._pacing.free, 0, lanes=(Lane.interactive,)
                    )
                    if fresh:
                        self._counts["read"] += len(fresh)
                        self._waiting.appendleft(delivery)
                        self._waiting.extendleft(reversed(fresh))
                        continue
                await self._dispatch(queue, deliveries, self._attempt(delivery), stop)
                continue
            if self._pacing.soon_free(GATHER_S):
                # actors about to be free too (their provider call just ended, or jobs are
                # that short): one read and one batch start for all of them
                with trio.move_on_after(GATHER_S):
                    while self._pacing.soon_free(GATHER_S):
                        await self._pacing.wait_actors()
            batch, tries = await self._read(queue, stop)
            self._counts["read"] += len(batch)
            await self._faults.hit("reader.after_read")
            attempts = [self._attempt(d) for d in batch]
            if self._prestarter is not None and not stop.is_set():
                await self._prestarter.start(self._coord, [
                    a for a in attempts
                    if a.entry_id not in self._ledger
                    and a.delivery.deliveries <= self.settings.max_deliveries
                ], tries, self._background)
            for i, attempt in enumerate(attempts):
                if stop.is_set():  # read but not started: give back for immediate redelivery
                    await self._give_back_prestarts(attempts[i:])
                    await queue.release(
                        self.consumer, [a.entry_id for a in attempts[i:]], self._lease_ms
                    )
                    break
                await self._dispatch(queue, deliveries, attempt, stop)

    async def _read(
        self, queue: JobQueue, stop: trio.Event
    ) -> tuple[list[Delivery], dict[str, FirstTry] | None]:
        """New entries for the free actors: with a backlog, by the locking read (entries and
        their first tries at lock and slot in one round trip); else by a blocking read."""
        count = self._pacing.free
        if self._prestarter is not None and self._coord is not None:
            locking = await self._prestarter.read(self._coord, queue, self.consumer, count)
            if locking is not None and locking[0]:
                return locking
        read = await queue.read_new(self.consumer, count, self.settings.read_block_ms)
        # a blocking read that woke on both lanes at once may bring more than asked (interactive
        # first): the rest waits in hand, where a later interactive entry still goes first
        self._waiting.extend(read[count:])
        self._counts["read"] += len(read[count:])
        return read[:count], None

    def _take_waiting(self) -> Delivery:
        """The next entry in hand: the first interactive one, else the oldest."""
        for i, delivery in enumerate(self._waiting):
            if delivery.job.lane is Lane.interactive:
                del self._waiting[i]
                return delivery
        return self._waiting.popleft()

    async def _dispatch(
        self,
        queue: JobQueue,
        deliveries: trio.MemorySendChannel[Attempt],
        attempt: Attempt,
        stop: trio.Event,
    ) -> None:
        delivery = attempt.delivery
        if delivery.entry_id in self._ledger:
            return  # already running here (reclaimed while its lease was being renewed)
        if delivery.deliveries > self.settings.max_deliveries:
            await self._dead_letter(queue, delivery)
            return
        self._ledger.add(delivery)
        try:
            # no actor may be receiving (pool restarting or gone): look at the stop flag every
            # read_block_ms; a send that timed out delivered nothing (trio guarantees it)
            while True:
                with trio.move_on_after(self.settings.read_block_ms / 1000):
                    await deliveries.send(attempt)
                    self._pacing.handed_off()
                    return
                if stop.is_set():
                    await self._give_back_prestarts([attempt])
                    self._ledger.forget(delivery.entry_id)
                    self._waiting.appendleft(delivery)  # _drain releases it
                    return
        except BaseException:
            # not received by any actor (trio guarantees it on cancel): it stays in our PEL
            self._ledger.forget(delivery.entry_id)
            raise

    async def _give_back_prestarts(self, attempts: list[Attempt]) -> None:
        if self._prestarter is not None:
            await self._prestarter.give_back(self._coord, attempts)

    async def _dead_letter(self, queue: JobQueue, delivery: Delivery) -> None:
        job = await self._store.get_job(delivery.job.job_id)
        last = (
            f"last error {job.error_code}: {job.error_message}" if job and job.error_code
            else "no error recorded (each delivery ended without an answer: the worker "
                 "running it stopped or died)"
        )
        reason = (
            f"delivered {delivery.deliveries} times (max {self.settings.max_deliveries}); "
            f"{last}"
        )
        dead = await self._store.fail_job(
            delivery.job.job_id, DeliveriesExhausted.code, reason, status=JobStatus.dead
        )
        await queue.dead_letter(delivery, reason)
        if dead is not None and dead.status is JobStatus.dead:
            job_ended(dead)
            metrics.error("job", DeliveriesExhausted.code)
            error = {"code": DeliveriesExhausted.code, "message": reason}
            self._events.publish(job_event(
                EventKind.job_dead, dead.id, dead.owner, error=error,
                request_id=dead.request_id, **lane_data(dead),
            ))
        self._counts["dead_lettered"] += 1
        log.warning("job %s dead-lettered: %s", delivery.job.job_id, reason)

    # -- recovery ----------------------------------------------------------------------------------

    async def _recover_own(self, queue: JobQueue) -> None:
        """Take back our pending entries that no actor of this process is running."""
        seen: set[str] = set()
        while True:
            pending = await queue.own_pending(self.consumer, 1000)
            ids = [i for i, _ in pending if i not in self._ledger and i not in seen]
            if not ids:
                return
            seen.update(ids)
            for start in range(0, len(ids), 100):
                claimed = await queue.claim(self.consumer, ids[start : start + 100])
                self._waiting.extend(claimed)
                self._counts["recovered"] += len(claimed)

    async def _reclaim_loop(self, queue: JobQueue) -> None:
        while True:
            await trio.sleep(self.settings.reclaim_interval_s)
            cursor = "0-0"
            while (room := self._ledger.capacity - len(self._waiting)) > 0:
                # claim no more than can start soon: claimed entries wait in our hands
                cursor, claimed = await queue.autoclaim(
                    self.consumer, self._lease_ms, cursor, min(room, RECLAIM_BATCH)
                )
                fresh = [d for d in claimed if d.entry_id not in self._ledger]
                self._waiting.extend(fresh)
                self._counts["reclaimed"] += len(fresh)
                if cursor in ("0-0", "0"):
                    break

    # -- leases and settlements -------------------------------------------------------------------

    async def _renew_loop(self, queue: JobQueue) -> None:
        while True:
            await trio.sleep(self.settings.lease_s / 3)
            # running entries, and those taken back but not yet started
            held = self._ledger.running_ids() + [d.entry_id for d in self._waiting]
            await queue.renew(self.consumer, held)

    async def _settle_loop(self, queue: JobQueue) -> None:
        while True:
            await self._ledger.wait_settled()
            settled = self._ledger.settled()
            if settled:
                await self._write_settlements(queue, settled)

    async def _write_settlements(self, queue: JobQueue, settled: dict[str, Ack | Release]) -> None:
        await self._faults.hit("reader.before_ack")
        acks = [i for i, s in settled.items() if isinstance(s, Ack)]
        await queue.ack(acks)
        self._counts["acked"] += len(acks)
        for entry_id, s in settled.items():
            if isinstance(s, Release):
                idle = self._lease_ms - int(s.delay * 1000)
                await queue.release(self.consumer, [entry_id], idle, s.retry_count)
                self._counts["released"] += 1
        self._ledger.done(list(settled))

    async def _drain(self, queue: JobQueue) -> None:
        """Graceful stop: let running jobs finish, then give back what is left."""
        with trio.move_on_after(self.settings.shutdown_grace_s):
            while self._ledger.running_ids():
                await self._ledger.wait_changed()
        with trio.move_on_after(self.settings.redis_timeout_s * 2, shield=True):
            try:
                settled = self._ledger.settled()
                if settled:
                    await self._write_settlements(queue, settled)
                left = self._ledger.running_ids() + [d.entry_id for d in self._waiting]
                await queue.release(self.consumer, left, self._lease_ms)
                self._counts["released"] += len(left)
                for entry_id in left:
                    self._ledger.forget(entry_id)
                self._waiting.clear()
            except ChorusError as exc:  # Redis away: the lease expiry gives them back instead
                log.warning("could not release in-flight entries at shutdown: %s", exc)
