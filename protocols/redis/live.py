"""A job's live audio on a Redis stream of its own (``Keys.live``): ``LiveWriter`` and
``LiveReader`` (``protocols/live.py``) on one coredis client.

Each entry has fields ``a`` (the attempt token), ``k`` (``LiveKind``), ``o`` (byte offset, or the
clip's size for an end) and ``d`` (the bytes of a chunk). Every write is XADD with an
approximate MAXLEN and a PEXPIRE in one MULTI, so a stream nobody reads is gone after its TTL and
a runaway one stays bounded; a reader that finds a gap (trimmed or expired entries) sees it in
the offsets. Writes are not idempotent (a repeated chunk is a second entry with the same offset);
the follower skips what it already has by offset.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import coredis
from coredis.tokens import PureToken

from protocols.live import LiveEvent, LiveKind
from protocols.redis.client import as_str, open_client, redis_errors
from protocols.redis.keys import Keys

__all__ = ["RedisLive", "open_live"]


class RedisLive:
    """Both sides of the live streams (the writer for the TTS actor, the reader for followers)."""

    def __init__(
        self, client: coredis.Redis[bytes], keys: Keys, *, ttl_s: float, maxlen: int
    ) -> None:
        self._r = client
        self.keys = keys
        self._ttl_ms = max(1000, int(ttl_s * 1000))
        self._maxlen = maxlen

    async def _add(self, job_id: str, fields: dict[str, bytes | str]) -> None:
        key = self.keys.live(job_id)
        with redis_errors("live xadd"):
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.xadd(
                    key, fields, trim_strategy=PureToken.MAXLEN,
                    trim_operator=PureToken.APPROXIMATELY, threshold=self._maxlen,
                )
                pipe.pexpire(key, self._ttl_ms)

    async def chunk(self, job_id: str, attempt: str, offset: int, data: bytes) -> None:
        await self._add(job_id, {"a": attempt, "k": LiveKind.chunk.value, "o": str(offset),
                                 "d": data})

    async def end(self, job_id: str, attempt: str, size: int) -> None:
        await self._add(job_id, {"a": attempt, "k": LiveKind.end.value, "o": str(size)})

    async def abort(self, job_id: str, attempt: str) -> None:
        await self._add(job_id, {"a": attempt, "k": LiveKind.abort.value, "o": "0"})

    async def read(self, job_id: str, after: str, block_ms: int) -> Sequence[LiveEvent]:
        with redis_errors("live xread"):
            reply = await self._r.xread(
                {self.keys.live(job_id): after}, count=256, block=block_ms or None
            )
        if not reply:
            return []
        events = []
        for entry in next(iter(reply.values())):
            fields = {as_str(k): v for k, v in entry.field_values.items()}
            try:
                events.append(LiveEvent(
                    id=as_str(entry.identifier), attempt=as_str(fields["a"]),
                    kind=LiveKind(as_str(fields["k"])), offset=int(fields.get("o", b"0")),
                    data=bytes(fields.get("d", b"")),
                ))
            except (KeyError, ValueError):  # not ours: skip it, never fail a follower for it
                continue
        return events


@asynccontextmanager
async def open_live(
    url: str, keys: Keys, *, stream_timeout: float, ttl_s: float, maxlen: int,
    max_connections: int = 4,
) -> AsyncIterator[RedisLive]:
    """A ``RedisLive`` on a client of its own."""
    async with open_client(url, stream_timeout=stream_timeout,
                           max_connections=max_connections) as client:
        yield RedisLive(client, keys, ttl_s=ttl_s, maxlen=maxlen)
