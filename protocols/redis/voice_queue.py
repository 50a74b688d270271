"""``VoiceSyncQueue`` on Redis: a sorted set of voice ids scored by the unix time of their next
poll, and a hash of their status (deadline, polls so far). Postgres stays the truth: VoiceSync
rebuilds this from the voices table on every start, so losing it loses no voice. Writes are
idempotent (a cancelled call may have been applied).
"""

from __future__ import annotations

from typing import Any

import coredis
import msgspec
from coredis.tokens import PureToken

from protocols.errors import QueueUnavailable
from protocols.messages import TrackedVoice
from protocols.redis.keys import Keys
from protocols.redis.queue import REDIS_ERRORS


class _Status(msgspec.Struct, frozen=True):
    deadline: float
    attempts: int = 0


_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(_Status)

# KEYS: zset, hash; ARGV: id, due, status json. Kept as it is when already tracked.
_TRACK_LUA = """
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[3]) == 1 then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
elseif redis.call('ZSCORE', KEYS[1], ARGV[1]) == false then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
end
return 1
"""


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisVoiceSyncQueue:
    def __init__(self, client: coredis.Redis[bytes], keys: Keys) -> None:
        self._r, self.keys = client, keys
        self._track = client.register_script(_TRACK_LUA)

    async def _guard(self, what: str, coro: Any) -> Any:
        try:
            return await coro
        except REDIS_ERRORS as exc:
            raise QueueUnavailable(f"voice sync {what} failed: {type(exc).__name__}") from exc

    async def track(self, voice_id: str, due: float, deadline: float) -> None:
        status = _enc.encode(_Status(deadline=deadline))
        await self._guard("track", self._track(
            keys=[self.keys.voice_sync, self.keys.voice_tracking], args=[voice_id, due, status]
        ))

    async def _status(self, ids: list[str]) -> list[_Status | None]:
        if not ids:
            return []
        raw = await self._guard("read", self._r.hmget(self.keys.voice_tracking, ids))
        return [None if r is None else _dec.decode(r) for r in raw]

    async def due(self, now: float, count: int) -> list[TrackedVoice]:
        raw = await self._guard("due", self._r.zrange(
            self.keys.voice_sync, "-inf", now, sortby=PureToken.BYSCORE, offset=0, count=count,
            withscores=True,
        ))
        return self._tracked(raw, await self._status([_s(m) for m, _ in raw]))

    async def tracked(self) -> list[TrackedVoice]:
        raw = await self._guard("list", self._r.zrange(
            self.keys.voice_sync, 0, -1, withscores=True
        ))
        return self._tracked(raw, await self._status([_s(m) for m, _ in raw]))

    def _tracked(self, raw: Any, status: list[_Status | None]) -> list[TrackedVoice]:
        out = []
        for (member, score), st in zip(raw, status, strict=True):
            st = st or _Status(deadline=float(score))
            out.append(TrackedVoice(voice_id=_s(member), due=float(score),
                                    deadline=st.deadline, attempts=st.attempts))
        return out

    async def reschedule(self, voice_id: str, due: float, attempts: int) -> None:
        (st,) = await self._status([voice_id])
        deadline = st.deadline if st is not None else due
        status = _enc.encode(_Status(deadline, attempts))
        try:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.hset(self.keys.voice_tracking, {voice_id: status})
                pipe.zadd(self.keys.voice_sync, {voice_id: due})
        except REDIS_ERRORS as exc:
            raise QueueUnavailable(f"voice sync reschedule failed: {type(exc).__name__}") from exc

    async def done(self, voice_id: str) -> None:
        try:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.zrem(self.keys.voice_sync, [voice_id])
                pipe.hdel(self.keys.voice_tracking, [voice_id])
        except REDIS_ERRORS as exc:
            raise QueueUnavailable(f"voice sync done failed: {type(exc).__name__}") from exc
