"""Figures of the job queue for operators (``GET /v1/admin/overview``, ``actors/ops``): each
lane's stream length and pending entries, the consumer group's consumers, the dead letters.
Read-only: XLEN, XPENDING, XINFO CONSUMERS, XRANGE on the queue's own client."""

from __future__ import annotations

import coredis.exceptions
import msgspec

from protocols.messages import DeadLetter
from protocols.redis.client import as_str, redis_errors
from protocols.redis.queue import RedisQueue, lane_of


class LaneFigure(msgspec.Struct, frozen=True, kw_only=True):
    lane: str
    stream: str
    length: int  # entries in the stream (queued + pending: acked entries are deleted)
    pending: int  # delivered to a consumer, not yet acked


class ConsumerFigure(msgspec.Struct, frozen=True, kw_only=True):
    lane: str
    name: str
    pending: int
    idle_ms: int  # since the consumer's last read or claim


class QueueFigures(msgspec.Struct, frozen=True, kw_only=True):
    lanes: list[LaneFigure]
    consumers: list[ConsumerFigure]
    dead_letters: int
    recent_dead: list[DeadLetter]  # the oldest few (a redrive takes them from the front)


async def queue_figures(queue: RedisQueue, *, dead_shown: int = 20) -> QueueFigures:
    r, keys = queue.client, queue.keys
    by_lane = await queue.lane_figures()
    lanes, consumers = [], []
    for lane in queue.lanes:
        length, pending = by_lane.get(lane.lane, (0, 0))
        lanes.append(LaneFigure(lane=lane.lane.value, stream=lane.stream, length=length,
                                pending=pending))
        with redis_errors("xinfo consumers"):
            try:
                rows = await r.xinfo_consumers(lane.stream, keys.group)
            except (coredis.exceptions.ResponseError,
                    coredis.exceptions.StreamConsumerGroupError):
                rows = ()  # no such stream or group yet
        for row in rows:
            f = {as_str(k): v for k, v in row.items()}
            consumers.append(ConsumerFigure(
                lane=lane.lane.value, name=as_str(f.get("name", b"")),
                pending=int(f.get("pending") or 0), idle_ms=int(f.get("idle") or 0),
            ))
    with redis_errors("xlen"):
        dead = int(await r.xlen(keys.dead))
    return QueueFigures(lanes=lanes, consumers=consumers, dead_letters=dead,
                        recent_dead=await queue.dead_letters(count=dead_shown))


def dead_lane(letter: DeadLetter) -> str:
    """The lane a letter came from (its original delivery id says it)."""
    return lane_of(letter.original_entry_id).value if letter.original_entry_id else "interactive"
