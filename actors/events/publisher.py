"""EventPublisher: writes the events actors and the web front publish, off the job path.

``publish(event)`` is synchronous and never blocks: the event goes into a bounded buffer (a full
buffer drops it, counted and logged). The actor batches what is buffered into one bus write
(global + owner stream, one Lua call) under a deadline; a failed write is retried a few times
with backoff (a timed-out write may have landed, so a retry can repeat events: at-least-once),
then dropped and counted. Redis errors never crash it, so an event-bus outage cannot use up the
supervisor's restart intensity. On stop it flushes what is buffered (bounded) and returns; it
starts first and stops last, after everything that publishes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

import msgspec
import trio

from protocols.errors import ChorusError
from protocols.events import Event
from protocols.redis.event_bus import RedisEventBus

log = logging.getLogger("chorus.events")

BUFFER = 4096
LINGER_S = 0.005  # a burst of events goes out in one write; subscribers see it 5 ms later
MAX_BATCH = 256
ATTEMPTS = 3
QUIET_WAIT_S = 0.01


class PublisherStatistics(msgspec.Struct, frozen=True):
    published: int
    dropped: int
    failed_writes: int
    buffered: int


class EventPublisher:
    def __init__(
        self,
        open_bus: Callable[[], AbstractAsyncContextManager[RedisEventBus]],
        *,
        timeout_s: float,
        buffer: int = BUFFER,
        quiet: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._open_bus = open_bus
        #: the moment to write (``Pacing.wait_quiet``: no provider slot is being refilled);
        #: waited for at most QUIET_WAIT_S
        self._quiet = quiet
        self._timeout = timeout_s
        # the publisher object outlives its incarnations: the buffer survives a restart
        self._send, self._recv = trio.open_memory_channel[Event](buffer)
        self._published = self._dropped = self._failed_writes = 0
        self._idle = trio.CancelScope()

    def statistics(self) -> PublisherStatistics:
        return PublisherStatistics(
            self._published, self._dropped, self._failed_writes,
            self._recv.statistics().current_buffer_used,
        )

    def publish(self, event: Event) -> None:
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self._dropped += 1
            if self._dropped % 1000 == 1:
                log.warning("event buffer full: dropped %d event(s) so far", self._dropped)

    async def run(self, stop: trio.Event, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with self._open_bus() as bus, trio.open_nursery() as nursery:

            async def stop_when_idle() -> None:
                await stop.wait()
                self._idle.cancel()

            nursery.start_soon(stop_when_idle)
            task_status.started()
            while True:
                batch = await self._next_batch(stop)
                if not batch:
                    break
                await self._write(bus, batch)
            nursery.cancel_scope.cancel()

    async def _next_batch(self, stop: trio.Event) -> list[Event]:
        batch: list[Event] = []
        if not stop.is_set():
            self._idle = trio.CancelScope()
            with self._idle:
                batch.append(await self._recv.receive())
                # linger a moment: events come in bursts (a job's succeeded + tts.created, the
                # three actors settling together), one write for the burst costs less CPU
                await trio.sleep(LINGER_S)
                if self._quiet is not None:
                    with trio.move_on_after(QUIET_WAIT_S):
                        await self._quiet()
        while len(batch) < MAX_BATCH:  # whatever else is buffered (all of it when stopping)
            try:
                batch.append(self._recv.receive_nowait())
            except trio.WouldBlock:
                break
        return batch

    async def _write(self, bus: RedisEventBus, batch: list[Event]) -> None:
        for attempt in range(ATTEMPTS):
            try:
                with trio.fail_after(self._timeout):
                    await bus.publish(batch)
                self._published += len(batch)
                return
            except (ChorusError, trio.TooSlowError) as exc:
                self._failed_writes += 1
                log.warning("event write failed (attempt %d): %s", attempt + 1, exc)
                if attempt + 1 < ATTEMPTS:
                    await trio.sleep(0.1 * 4**attempt)
        self._dropped += len(batch)
        log.error("dropped %d event(s) after %d failed writes", len(batch), ATTEMPTS)
