"""How the parts of one process open their Redis connections: each opener is an async context
manager with its own small pool, its timeouts from settings (a blocking read gets its block
time on top). Built once by the composition root (``run.py``) and handed to the Service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from protocols.redis.event_bus import RedisEventBus, open_event_bus
from protocols.redis.keys import Keys
from protocols.redis.live import RedisLive, open_live
from protocols.redis.processes import RedisProcesses, open_processes
from protocols.redis.queue import RedisQueue, open_queue
from protocols.redis.voice_queue import RedisVoiceSyncQueue
from protocols.settings import Settings

__all__ = ["RedisOpeners"]


def _read_slack(block_ms: int) -> float:
    """Extra time a call gets when it blocks on the server for ``block_ms``."""
    return block_ms / 1000 + 3 if block_ms else 0.0


class RedisOpeners:
    """One process's Redis connections by purpose (queue, event bus, voice schedule)."""

    def __init__(self, url: str, settings: Settings) -> None:
        self.url = url
        self.settings = settings
        self.keys = Keys(settings.redis_prefix)

    def queue(self, *, block_ms: int = 0) -> AbstractAsyncContextManager[RedisQueue]:
        """The job stream (also the client coordination and counters use)."""
        return open_queue(
            self.url, self.keys,
            stream_timeout=self.settings.redis_timeout_s + _read_slack(block_ms),
            max_connections=4,
        )

    def event_bus(
        self, *, block_ms: int = 0, max_connections: int = 2
    ) -> AbstractAsyncContextManager[RedisEventBus]:
        s = self.settings
        return open_event_bus(
            self.url, self.keys,
            stream_timeout=s.redis_timeout_s + _read_slack(block_ms),
            max_connections=max_connections,
            maxlen=s.events_maxlen,
            owner_maxlen=s.owner_events_maxlen,
            owner_ttl_s=s.owner_events_ttl_s,
        )

    def live(
        self, *, block_ms: int = 0, max_connections: int = 4
    ) -> AbstractAsyncContextManager[RedisLive]:
        """Jobs' live audio streams (``protocols.redis.live``): publishing and following."""
        s = self.settings
        return open_live(
            self.url, self.keys, stream_timeout=s.redis_timeout_s + _read_slack(block_ms),
            ttl_s=s.live_ttl_s, maxlen=s.live_maxlen, max_connections=max_connections,
        )

    @asynccontextmanager
    async def voice_queue(self) -> AsyncIterator[RedisVoiceSyncQueue]:
        """VoiceSync's schedule, on a queue client of its own."""
        async with self.queue() as queue:
            yield RedisVoiceSyncQueue(queue.client, self.keys)

    def processes(self) -> AbstractAsyncContextManager[RedisProcesses]:
        """The deployment's process list (the reporter's heartbeats), on a client of its own."""
        return open_processes(self.url, self.keys, stream_timeout=self.settings.redis_timeout_s)
