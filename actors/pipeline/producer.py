"""Producer: makes submitted jobs durable in the Redis job stream.

The HTTP front calls ``Submitter.submit(job)``, which hands a ticket to the Producer over a
bounded memory channel and waits for the XADD. The Producer batches what is waiting into one
idempotent enqueue (a job id is added once however often it is submitted). A full channel past
the submit deadline is ``QueueFull`` (the front answers 503 with Retry-After, never hangs).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import msgspec
import trio

from protocols.errors import ChorusError, QueueFull, QueueUnavailable
from protocols.faults import FaultPlan
from protocols.messages import SpeechJob
from protocols.ports import JobQueue

MAX_BATCH = 256
#: channel buffer: lets the Producer batch XADDs while one is in flight (bounded, as every channel)
CHANNEL_CAPACITY = MAX_BATCH


class Ticket:
    """One submission: the job, and how its enqueue ended."""

    __slots__ = ("done", "error", "job")

    def __init__(self, job: SpeechJob) -> None:
        self.job = job
        self.done = trio.Event()
        self.error: ChorusError | None = None

    def finish(self, error: ChorusError | None = None) -> None:
        self.error = error
        self.done.set()


class ProducerStatistics(msgspec.Struct, frozen=True):
    enqueued: int
    batches: int
    failures: int


class Submitter:
    """The web front's handle on the Producer (one per process; holds a send clone)."""

    def __init__(self, send: trio.MemorySendChannel[Ticket], timeout: float) -> None:
        self._send = send
        self._timeout = timeout

    async def submit(self, job: SpeechJob) -> None:
        ticket = Ticket(job)
        with trio.move_on_after(self._timeout) as scope:
            await self._send.send(ticket)
        if scope.cancelled_caught:
            raise QueueFull("the job channel stayed full", retry_after=1)
        with trio.move_on_after(self._timeout) as scope:
            await ticket.done.wait()
        if scope.cancelled_caught:
            raise QueueUnavailable("enqueue did not finish in time", retry_after=2)
        if ticket.error is not None:
            raise ticket.error


class Producer:
    def __init__(
        self,
        open_queue: Callable[[], AbstractAsyncContextManager[JobQueue]],
        tickets: trio.MemoryReceiveChannel[Ticket],
        faults: FaultPlan | None = None,
    ) -> None:
        self._open_queue = open_queue
        self._tickets = tickets
        self._faults = faults or FaultPlan()
        self._enqueued = self._batches = self._failures = 0

    def statistics(self) -> ProducerStatistics:
        return ProducerStatistics(self._enqueued, self._batches, self._failures)

    async def run(self, stop: trio.Event, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with self._open_queue() as queue, self._tickets.clone() as tickets:
            task_status.started()
            while not stop.is_set():
                batch = await self._next_batch(tickets)
                if batch:
                    await self._enqueue(queue, batch)

    async def _next_batch(self, tickets: trio.MemoryReceiveChannel[Ticket]) -> list[Ticket]:
        batch: list[Ticket] = []
        with trio.move_on_after(0.25):  # wake to look at the stop flag
            batch.append(await tickets.receive())
        while batch and len(batch) < MAX_BATCH:
            try:
                batch.append(tickets.receive_nowait())
            except trio.WouldBlock:
                break
        return batch

    async def _enqueue(self, queue: JobQueue, batch: list[Ticket]) -> None:
        try:
            await self._faults.hit("producer.before_xadd")
            await queue.enqueue([t.job for t in batch])
        except QueueUnavailable as exc:
            # Redis away: the submitters answer 503; the client reconnects by itself
            self._failures += 1
            for t in batch:
                t.finish(exc)
            return
        except BaseException:
            for t in batch:
                t.finish(QueueUnavailable("the producer stopped", retry_after=2))
            raise
        self._batches += 1
        self._enqueued += len(batch)
        for t in batch:
            t.finish()
