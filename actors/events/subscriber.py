"""EventSubscriber: a durable consumer of the global event stream (one consumer group per use).

Run as a supervised child (``await nursery.start(sub.run, stop)``). On start it creates the
group if needed, then handles its own pending entries first (those delivered to this consumer
name but not acked: a crash or stop in the middle of a batch), then new ones. Handled events
are acked together (one XACK) every ``ACK_EVERY_S`` or ``batch`` events, whichever comes
first (events that come one at a time, a cache hit's each, would cost an XACK each), and at
once when a handler raises or the stop comes (those handled so far); an event whose handler
raised (the subscriber crashes, its supervisor restarts it) or that was read but not handled
before a stop comes back to the same consumer name on its next start, and so may a handled one
whose ack did not reach Redis (or that waited for its ack when the process died).
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
#: handled events wait at most this long (or until the next read past it) for their XACK
ACK_EVERY_S = 0.2


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
            unacked: list[str] = []  # handled, not yet acked (``ACK_EVERY_S``)
            since = trio.current_time()
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
                if not unacked:
                    since = trio.current_time()
                failed = True  # stays True if a handler raises (or we are cancelled)
                try:
                    for event in events:
                        if stop.is_set():
                            break  # read, not handled: it stays pending for our next start
                        await self._handle(event)
                        unacked.append(event.id)
                    failed = False
                finally:
                    unacked.extend(unusable)
                    due = (failed or stop.is_set() or len(unacked) >= self._batch
                           or trio.current_time() - since >= ACK_EVERY_S)
                    if unacked and due:
                        done, unacked = unacked, []
                        await self._ack(bus, done)
            await self._ack(bus, unacked)  # stopped: what is handled is acked

    async def _ack(self, bus: RedisEventBus, ids: list[str]) -> None:
        """One XACK, shielded and bounded (a cancelled ack: they come back, harmless)."""
        if ids:
            with trio.CancelScope(shield=True), trio.move_on_after(ACK_LIMIT_S):
                await bus.ack(self.group, ids)

    async def _handle(self, event: Event) -> None:
        if self._kinds is None or event.kind in self._kinds:
            await self._handler(event)
            self._handled += 1
        else:
            self._skipped += 1

