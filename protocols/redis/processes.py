"""``ProcessRegistry`` on Redis: one hash per process (``Keys.process``) with its identity,
``last_seen`` (Redis' clock, so hosts' clocks do not matter) and its restart totals
(``r:<supervisor>/<child>``), expiring ``ttl_s`` after the last beat; and a set of process ids
(``Keys.processes``) for listing without SCAN. Both are one Lua call (``scripts.PROCESS_BEAT``,
``scripts.PROCESSES_LIST``); an id whose hash has expired is dropped from the set when listed.
Writes are idempotent. Redis errors become ``QueueUnavailable`` (``client.redis_errors``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import coredis

from protocols.processes import ProcessInfo, ProcessRecord
from protocols.redis import scripts
from protocols.redis.client import as_str, open_client, redis_errors
from protocols.redis.keys import Keys

__all__ = ["RedisProcesses", "open_processes"]

_RESTART = "r:"
_INFO = ("role", "consumer", "host", "pid", "started_at")


class RedisProcesses:
    def __init__(self, client: coredis.Redis[bytes], keys: Keys) -> None:
        self._r, self.keys = client, keys
        self._beat = scripts.PROCESS_BEAT.register(client)
        self._list = scripts.PROCESSES_LIST.register(client)

    async def beat(self, info: ProcessInfo, restarts: Mapping[str, int], ttl_s: float) -> None:
        fields: list[str | int | float] = [
            "role", info.role, "consumer", info.consumer, "host", info.host, "pid", info.pid,
            "started_at", repr(info.started_at),
        ]
        for child, n in sorted(restarts.items()):
            fields += [_RESTART + child, n]
        with redis_errors("process heartbeat"):
            await self._beat(
                keys=[self.keys.processes, self.keys.process(info.id)],
                args=[info.id, max(1, round(ttl_s * 1000)), *fields],
            )

    async def remove(self, process_id: str) -> None:
        with redis_errors("process removal"):
            await self._r.delete([self.keys.process(process_id)])
            await self._r.srem(self.keys.processes, [process_id])

    async def processes(self, stale_s: float) -> list[ProcessRecord]:
        with redis_errors("process list"):
            reply = await self._list(keys=[self.keys.processes],
                                     args=[self.keys.process_prefix])
        now_ms, *rows = reply
        oldest = int(now_ms) - stale_s * 1000
        records = []
        for raw_id, flat in rows:
            values = {as_str(flat[i]): as_str(flat[i + 1]) for i in range(0, len(flat), 2)}
            seen = int(values.get("last_seen", 0))
            if seen < oldest or not all(k in values for k in _INFO):
                continue
            info = ProcessInfo(
                id=as_str(raw_id), role=values["role"], consumer=values["consumer"],
                host=values["host"], pid=int(values["pid"]),
                started_at=float(values["started_at"]),
            )
            restarts = {k[len(_RESTART):]: int(v) for k, v in values.items()
                        if k.startswith(_RESTART)}
            records.append(ProcessRecord(info=info, last_seen=seen / 1000, restarts=restarts))
        records.sort(key=lambda r: (r.info.role, r.info.consumer, r.info.host, r.info.pid,
                                    r.info.started_at))
        return records


@asynccontextmanager
async def open_processes(
    url: str, keys: Keys, *, stream_timeout: float, max_connections: int = 2
) -> AsyncIterator[RedisProcesses]:
    """A registry on a client of its own (the reporter's: a small pool, short timeouts)."""
    async with open_client(
        url, stream_timeout=stream_timeout, max_connections=max_connections,
        pool_timeout=stream_timeout,
    ) as client:
        yield RedisProcesses(client, keys)
