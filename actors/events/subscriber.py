"""EventSubscriber: a durable consumer of the global event stream (one consumer group per use).

Run as a supervised child (``await nursery.start(sub.run, stop)``). On start it creates the
group if needed, then handles its own pending entries first (those delivered to this consumer
name but not acked: a crash or stop in the middle of a batch), then new ones. The events of one
read are acked together (one XACK) once handled, also when a handler raises or the stop comes
half-way (those handled so far); an event whose handler raised (the subscriber crashes, its
supervisor restarts it) or that was read but not handled before a stop comes back to the same
consumer name on its next start, and so may a handled one whose ack did not reach Redis.
Events of other kinds than ``kinds`` are acked without calling the handler.

At-least-once: a crash between the handler's effect and its ack repeats the event; handlers
are idempotent by ``(subject, kind)`` or by event id. Consumer names must be stable.
A blocked read is never cancelled on stop: it blocks ``block_ms`` at most, the stop flag is
checked between reads and between events.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager

import msgspec
import trio

from protocols.events import Event, EventKind, id_key
from protocols.redis.event_bus import RedisEventBus

log = logging.getLogger("chorus.events")

ACK_LIMIT_S = 5.0


class SubscriberStatistics(msgspec.Struct, frozen=True):
    handled: int
    skipped: int
    recovered: int


class EventSubscriber:
    def __init__(
        self,
        open_bus: Callable[[], AbstractAsyncContextManager[RedisEventBus]],
        *,
        group: str,
        consumer: str,
        handler: Callable[[Event], Awaitable[None]],
        kinds: Iterable[EventKind] | None = None,
        start: str = "$",
        block_ms: int = 1000,
        batch: int = 100,
    ) -> None:
        self._open_bus = open_bus
        self.group = group
        self.consumer = consumer
        self._handler = handler
        self._kinds = frozenset(kinds) if kinds is not None else None
        self._start = start
        self._block_ms = block_ms
        self._batch = batch
        self._handled = self._skipped = self._recovered = 0

    def statistics(self) -> SubscriberStatistics:
        return SubscriberStatistics(self._handled, self._skipped, self._recovered)

    async def run(self, stop: trio.Event, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with self._open_bus() as bus:
            await bus.ensure_group(self.group, self._start)
            task_status.started()
            after = "0"  # own pending entries first, then ">" (new ones)
            while not stop.is_set():
                events, unusable = await bus.read_group(
                    self.group, self.consumer, after, count=self._batch, block_ms=self._block_ms
                )
                if after != ">":
                    if not events and not unusable:
                        after = ">"
                        continue
                    self._recovered += len(events)
                    ids = [e.id for e in events] + unusable
                    after = max(ids, key=id_key)
                done = list(unusable)
                try:
                    for event in events:
                        if stop.is_set():
                            break  # read, not handled: it stays pending for our next start
                        await self._handle(event)
                        done.append(event.id)
                finally:
                    if done:  # one XACK per read (a cancelled ack: they come back, harmless)
                        with trio.CancelScope(shield=True):
                            with trio.move_on_after(ACK_LIMIT_S):
                                await bus.ack(self.group, done)

    async def _handle(self, event: Event) -> None:
        if self._kinds is None or event.kind in self._kinds:
            await self._handler(event)
            self._handled += 1
        else:
            self._skipped += 1

