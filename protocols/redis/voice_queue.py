"""``VoiceSyncQueue`` on Redis: a sorted set of voice ids scored by the unix time of their next
poll, and a hash of their status (deadline, polls so far). Postgres stays the truth: VoiceSync
rebuilds this from the voices table on every start, so losing it loses no voice. Writes are
idempotent (a cancelled call may have been applied). Redis errors become ``QueueUnavailable``
(``client.redis_errors``); tracking is one Lua call (``scripts.TRACK``).
"""

from __future__ import annotations

from typing import Any

import coredis
import msgspec
from coredis.tokens import PureToken

from protocols.messages import TrackedVoice
from protocols.redis import scripts
from protocols.redis.client import as_str, redis_errors
from protocols.redis.keys import Keys

__all__ = ["RedisVoiceSyncQueue"]


class _Status(msgspec.Struct, frozen=True):
    deadline: float
    attempts: int = 0


_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(_Status)


class RedisVoiceSyncQueue:
    def __init__(self, client: coredis.Redis[bytes], keys: Keys) -> None:
        self._r, self.keys = client, keys
        self._track = scripts.TRACK.register(client)

    async def track(self, voice_id: str, due: float, deadline: float) -> None:
        status = _enc.encode(_Status(deadline=deadline))
        with redis_errors("voice sync track"):
            await self._track(
                keys=[self.keys.voice_sync, self.keys.voice_tracking], args=[voice_id, due, status]
            )

    async def _status(self, ids: list[str]) -> list[_Status | None]:
        if not ids:
            return []
        with redis_errors("voice sync read"):
            raw = await self._r.hmget(self.keys.voice_tracking, ids)
        return [None if r is None else _dec.decode(r) for r in raw]

    async def due(self, now: float, count: int) -> list[TrackedVoice]:
        with redis_errors("voice sync due"):
            raw = await self._r.zrange(
                self.keys.voice_sync, "-inf", now, sortby=PureToken.BYSCORE, offset=0,
                count=count, withscores=True,
            )
        return self._tracked(raw, await self._status([as_str(m) for m, _ in raw]))

    async def tracked(self) -> list[TrackedVoice]:
        with redis_errors("voice sync list"):
            raw = await self._r.zrange(self.keys.voice_sync, 0, -1, withscores=True)
        return self._tracked(raw, await self._status([as_str(m) for m, _ in raw]))

    def _tracked(self, raw: Any, status: list[_Status | None]) -> list[TrackedVoice]:
        out = []
        for (member, score), st in zip(raw, status, strict=True):
            st = st or _Status(deadline=float(score))
            out.append(TrackedVoice(voice_id=as_str(member), due=float(score),
                                    deadline=st.deadline, attempts=st.attempts))
        return out

    async def reschedule(self, voice_id: str, due: float, attempts: int) -> None:
        (st,) = await self._status([voice_id])
        deadline = st.deadline if st is not None else due
        status = _enc.encode(_Status(deadline, attempts))
        with redis_errors("voice sync reschedule"):
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.hset(self.keys.voice_tracking, {voice_id: status})
                pipe.zadd(self.keys.voice_sync, {voice_id: due})

    async def done(self, voice_id: str) -> None:
        with redis_errors("voice sync done"):
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.zrem(self.keys.voice_sync, [voice_id])
                pipe.hdel(self.keys.voice_tracking, [voice_id])
