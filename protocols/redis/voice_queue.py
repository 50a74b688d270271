"""``VoiceSyncQueue`` on Redis: a sorted set of voice ids scored by the unix time of their next
poll (the schedule), and one status key per voice (deadline, polls so far, state) that expires
``margin_s`` after the voice's window: its deadline (a clone's 30 minutes to become ready) or
its next poll, whichever is later. So an entry nobody finishes (its voice deleted while no
VoiceSync ran, a process gone for good) leaves Redis by itself; the schedule's own TTL is kept
at least as long as its longest status, so it too goes once nothing is tracked.

A voice in the schedule whose status has expired is dropped when it is next read (``due``,
``tracked``). Postgres stays the truth: VoiceSync rebuilds this from the voices table on every
start and every rescan, so an expired or lost entry loses no voice. Writes are idempotent (a
cancelled call may have been applied). Redis errors become ``QueueUnavailable``
(``client.redis_errors``); tracking and rescheduling are one Lua call each (``scripts.TRACK``,
``scripts.RESCHEDULE``). TTLs are relative, computed from ``clock`` (the caller's unix time,
the same clock as ``due`` and ``deadline``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import coredis
import msgspec
from coredis.tokens import PureToken

from protocols.messages import TrackedVoice
from protocols.redis import scripts
from protocols.redis.client import as_str, redis_errors
from protocols.redis.keys import Keys

__all__ = ["TTL_MARGIN_S", "RedisVoiceSyncQueue"]

#: a status outlives its voice's window by this much (a late poll, a slow VoiceSync restart)
TTL_MARGIN_S = 300.0


class _Status(msgspec.Struct, frozen=True):
    deadline: float
    attempts: int = 0
    state: str = "processing"


_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(_Status)


class RedisVoiceSyncQueue:
    def __init__(
        self, client: coredis.Redis[bytes], keys: Keys, *, margin_s: float = TTL_MARGIN_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._r, self.keys = client, keys
        self.margin_s, self._clock = margin_s, clock
        self._track = scripts.TRACK.register(client)
        self._reschedule = scripts.RESCHEDULE.register(client)

    def ttl_ms(self, due: float, deadline: float) -> int:
        """How long a status written now lives: until ``margin_s`` after the later of the
        voice's deadline and its next poll (at least a millisecond)."""
        return max(1, round((max(deadline, due) + self.margin_s - self._clock()) * 1000))

    async def track(
        self, voice_id: str, due: float, deadline: float, state: str = "processing"
    ) -> None:
        status = _enc.encode(_Status(deadline=deadline, state=state))
        with redis_errors("voice sync track"):
            await self._track(
                keys=[self.keys.voice_sync, self.keys.voice_status(voice_id)],
                args=[voice_id, due, status, self.ttl_ms(due, deadline)],
            )

    async def _statuses(self, ids: list[str]) -> list[_Status | None]:
        if not ids:
            return []
        with redis_errors("voice sync read"):
            raw = await self._r.mget([self.keys.voice_status(i) for i in ids])
        return [None if r is None else _dec.decode(r) for r in raw]

    async def status(self, voice_id: str) -> TrackedVoice | None:
        """The voice's entry, or None when it is not tracked (or its status has expired)."""
        with redis_errors("voice sync read"):
            score = await self._r.zscore(self.keys.voice_sync, voice_id)
        (st,) = await self._statuses([voice_id])
        if score is None or st is None:
            return None
        return TrackedVoice(voice_id=voice_id, due=float(score), deadline=st.deadline,
                            attempts=st.attempts, state=st.state)

    async def due(self, now: float, count: int) -> list[TrackedVoice]:
        with redis_errors("voice sync due"):
            raw = await self._r.zrange(
                self.keys.voice_sync, "-inf", now, sortby=PureToken.BYSCORE, offset=0,
                count=count, withscores=True,
            )
        return await self._live(raw)

    async def tracked(self) -> list[TrackedVoice]:
        with redis_errors("voice sync list"):
            raw = await self._r.zrange(self.keys.voice_sync, 0, -1, withscores=True)
        return await self._live(raw)

    async def _live(self, raw: Any) -> list[TrackedVoice]:
        """The entries whose status is still there; the others (expired) leave the schedule."""
        ids = [as_str(member) for member, _ in raw]
        out, expired = [], []
        for voice_id, (_, score), st in zip(ids, raw, await self._statuses(ids), strict=True):
            if st is None:
                expired.append(voice_id)
                continue
            out.append(TrackedVoice(voice_id=voice_id, due=float(score), deadline=st.deadline,
                                    attempts=st.attempts, state=st.state))
        if expired:
            with redis_errors("voice sync expire"):
                await self._r.zrem(self.keys.voice_sync, expired)
        return out

    async def reschedule(
        self, voice_id: str, due: float, attempts: int, state: str | None = None
    ) -> None:
        (st,) = await self._statuses([voice_id])
        deadline = st.deadline if st is not None else due
        state = state or (st.state if st is not None else "processing")
        status = _enc.encode(_Status(deadline, attempts, state))
        with redis_errors("voice sync reschedule"):
            await self._reschedule(
                keys=[self.keys.voice_sync, self.keys.voice_status(voice_id)],
                args=[voice_id, due, status, self.ttl_ms(due, deadline)],
            )

    async def done(self, voice_id: str) -> None:
        with redis_errors("voice sync done"):
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.zrem(self.keys.voice_sync, [voice_id])
                pipe.delete([self.keys.voice_status(voice_id)])
