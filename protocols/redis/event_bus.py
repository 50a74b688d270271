"""The event bus on Redis Streams (coredis 6): publish, read (SSE), consumer groups (subscribers).

- ``publish`` writes a batch in one Lua call (``scripts.PUBLISH``): each event is XADDed to
  the global stream ``{prefix}:events`` (``MAXLEN ~ events_maxlen``) and, under the *same* entry
  id, to the owner's stream ``{prefix}:events:{owner}`` (``MAXLEN ~ owner_events_maxlen``,
  expiry refreshed).
  One id everywhere: it is the SSE event id, and ``Last-Event-ID`` resumes from it.
- Trimming is approximate and ignores consumer groups: a subscriber down for longer than the
  retention finds its oldest pending entries gone (they are acked and skipped, and counted).
- ``read`` is XREAD on one stream after an id (history and live alike); ``read_group`` and
  ``ack`` serve durable subscribers (``actors/events/subscriber.py``).
- coredis and builtin connection errors become ``QueueUnavailable`` (``client.redis_errors``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import coredis
import coredis.exceptions
import msgspec

from protocols.events import Event, decode_event, encode_event
from protocols.redis import scripts
from protocols.redis.client import as_str, open_client, redis_errors
from protocols.redis.keys import Keys

__all__ = ["RedisEventBus", "open_event_bus"]


class RedisEventBus:
    def __init__(
        self,
        client: coredis.Redis[bytes],
        keys: Keys,
        *,
        maxlen: int = 100_000,
        owner_maxlen: int = 10_000,
        owner_ttl_s: int = 7 * 24 * 3600,
    ) -> None:
        self._r = client
        self.keys = keys
        self._limits = [maxlen, owner_maxlen, owner_ttl_s]
        self._publish = scripts.PUBLISH.register(client)
        self.trimmed = 0  # pending entries found deleted by trimming (acked, skipped)

    # -- publishing ------------------------------------------------------------------------------

    async def publish(self, events: Sequence[Event]) -> list[str]:
        """Write the events; returns their ids. A timed-out call may still have been applied
        (a retry then repeats the events: at-least-once)."""
        if not events:
            return []
        keys = [self.keys.events, *(self.keys.owner_events(e.owner) for e in events)]
        args: list[Any] = [*self._limits, *(encode_event(e) for e in events)]
        with redis_errors("event publish"):
            ids = await self._publish(keys=keys, args=args)
        return [as_str(i) for i in ids]

    # -- reading (SSE) ---------------------------------------------------------------------------

    def owner_stream(self, owner: str) -> str:
        return self.keys.owner_events(owner)

    async def tail(self, stream: str) -> str:
        """The id of the newest entry of ``stream`` (``0-0`` when empty): read after it for
        what happens from now on."""
        with redis_errors("xrevrange"):
            entries = await self._r.xrevrange(stream, "+", "-", count=1)
        return as_str(entries[0].identifier) if entries else "0-0"

    async def read(
        self, stream: str, after: str, *, count: int = 100, block_ms: int | None = None
    ) -> list[Event]:
        """Events of ``stream`` after id ``after``, oldest first; blocks up to ``block_ms``
        when there are none yet."""
        with redis_errors("xread"):
            reply = await self._r.xread({stream: after}, count=count, block=block_ms)
        if not reply:
            return []
        return _decode(next(iter(reply.values())))

    # -- durable subscribers ---------------------------------------------------------------------

    async def ensure_group(self, group: str, start: str = "$") -> None:
        """Create the consumer group on the global stream (``start``: ``$`` = new events only,
        ``0`` = everything retained). An existing group keeps its position."""
        with redis_errors("cannot create consumer group", detail=True):
            try:
                await self._r.xgroup_create(self.keys.events, group, start, mkstream=True)
            except coredis.exceptions.StreamDuplicateConsumerGroupError:
                pass

    async def read_group(
        self, group: str, consumer: str, after: str, *, count: int, block_ms: int | None
    ) -> tuple[list[Event], list[str]]:
        """XREADGROUP: ``after`` = ``>`` for new events, an id for this consumer's own pending
        entries after it. Returns (events, ids of entries that could not be used: trimmed or
        undecodable; the caller acks them)."""
        with redis_errors("xreadgroup"):
            reply = await self._r.xreadgroup(
                group, consumer, streams={self.keys.events: after}, count=count,
                block=block_ms if after == ">" else None,
            )
        if not reply:
            return [], []
        events: list[Event] = []
        unusable: list[str] = []
        for entry in next(iter(reply.values())):
            event = _decode_one(entry)
            if event is None:
                unusable.append(as_str(entry.identifier))
            else:
                events.append(event)
        self.trimmed += len(unusable)
        return events, unusable

    async def ack(self, group: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        with redis_errors("xack"):
            await self._r.xack(self.keys.events, group, list(ids))

    async def pending(self, group: str) -> int:
        with redis_errors("xpending"):
            summary = await self._r.xpending(self.keys.events, group)
        return int(summary.pending)


def _decode_one(entry: Any) -> Event | None:
    payload = entry.field_values.get(b"e") if entry.field_values else None
    if payload is None:
        return None
    try:
        return decode_event(payload, as_str(entry.identifier))
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _decode(entries: Sequence[Any]) -> list[Event]:
    return [e for e in map(_decode_one, entries) if e is not None]


@asynccontextmanager
async def open_event_bus(
    url: str,
    keys: Keys,
    *,
    stream_timeout: float,
    max_connections: int = 4,
    pool_timeout: float = 5.0,
    maxlen: int = 100_000,
    owner_maxlen: int = 10_000,
    owner_ttl_s: int = 7 * 24 * 3600,
) -> AsyncIterator[RedisEventBus]:
    """A ``RedisEventBus`` on a client of its own (``client.open_client``).
    ``stream_timeout`` must exceed any BLOCK; ``max_connections`` bounds concurrent readers."""
    async with open_client(url, stream_timeout=stream_timeout, max_connections=max_connections,
                           pool_timeout=pool_timeout) as client:
        yield RedisEventBus(
            client, keys, maxlen=maxlen, owner_maxlen=owner_maxlen, owner_ttl_s=owner_ttl_s
        )
