"""The job queue on Redis Streams (coredis 6, anyio-native, runs under trio).

Rules this module keeps (docs/ARCHITECTURE.md, "Redis rules"):
- every write is idempotent, because a cancelled or timed-out call has an unknown outcome;
- enqueue is idempotent by job id (a marker key set in the same Lua call as the XADD:
  ``scripts.ENQUEUE``);
- ack is XACK + XDEL in one MULTI; the stream is never trimmed with a plain MAXLEN;
- dead-lettering is XADD to the dead-letter stream *then* ack (a crash between duplicates a
  dead letter, never loses a job);
- entries that cannot be decoded are dead-lettered here, so actors only see typed jobs;
- coredis and builtin connection errors become ``QueueUnavailable`` (``client.redis_errors``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

import coredis
import coredis.exceptions
import msgspec

from protocols.messages import DeadLetter, Delivery, SpeechJob, StreamMessage
from protocols.redis import scripts
from protocols.redis.client import as_str, open_client, redis_errors
from protocols.redis.keys import Keys

__all__ = ["ENQUEUE_MARKER_TTL_MS", "RedisQueue", "encode_job", "open_queue"]

ENQUEUE_MARKER_TTL_MS = 7 * 24 * 3600 * 1000

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(StreamMessage)


def encode_job(job: SpeechJob) -> bytes:
    return _encoder.encode(job)


class _Entry(NamedTuple):
    identifier: str
    field_values: dict[bytes, bytes]


class RedisQueue:
    """``JobQueue`` on one coredis client. Create one per actor incarnation (see
    docs/ARCHITECTURE.md)."""

    def __init__(self, client: coredis.Redis[bytes], keys: Keys) -> None:
        self._r = client
        self.keys = keys
        self._enqueue_script = scripts.ENQUEUE.register(client)

    @property
    def client(self) -> coredis.Redis[bytes]:
        return self._r

    # -- set-up and health -----------------------------------------------------------------------

    async def ping(self) -> None:
        with redis_errors("Redis ping"):
            await self._r.ping()

    async def ensure_group(self) -> None:
        with redis_errors("cannot create consumer group", detail=True):
            try:
                await self._r.xgroup_create(self.keys.jobs, self.keys.group, "0", mkstream=True)
            except coredis.exceptions.StreamDuplicateConsumerGroupError:
                pass

    # -- producing -------------------------------------------------------------------------------

    async def enqueue(self, jobs: Sequence[SpeechJob]) -> None:
        if not jobs:
            return
        keys = [self.keys.jobs, *(self.keys.enqueued(j.job_id) for j in jobs)]
        args: list[Any] = [ENQUEUE_MARKER_TTL_MS]
        for j in jobs:
            args += [encode_job(j), j.job_id, j.cache_key]
        with redis_errors("enqueue"):
            await self._enqueue_script(keys=keys, args=args)

    async def add_raw(self, job: SpeechJob) -> str:
        """XADD unconditionally (dead-letter redrive: the job is to run again), and (re)set its
        enqueue marker, so the orphan sweeper knows it is in the stream."""
        fields = {"m": encode_job(job), "j": job.job_id, "k": job.cache_key}
        with redis_errors("xadd"):
            entry = as_str(await self._r.xadd(self.keys.jobs, fields))
            await self._r.set(self.keys.enqueued(job.job_id), entry, px=ENQUEUE_MARKER_TTL_MS)
        return entry

    async def enqueued(self, job_ids: Sequence[str]) -> set[str]:
        """The jobs among ``job_ids`` whose XADD happened (their enqueue marker exists)."""
        if not job_ids:
            return set()
        with redis_errors("mget"):
            values = await self._r.mget([self.keys.enqueued(j) for j in job_ids])
        return {j for j, v in zip(job_ids, values, strict=True) if v is not None}

    # -- consuming -------------------------------------------------------------------------------

    async def read_new(self, consumer: str, count: int, block_ms: int) -> list[Delivery]:
        with redis_errors("xreadgroup"):
            reply = await self._r.xreadgroup(
                self.keys.group, consumer, streams={self.keys.jobs: ">"}, count=count,
                block=block_ms,
            )
        if not reply:
            return []
        entries = next(iter(reply.values()))
        counts = dict.fromkeys((as_str(e.identifier) for e in entries), 1)
        return await self._decode(entries, counts)

    async def decode(self, entries: Sequence[tuple[str, dict[bytes, bytes]]]) -> list[Delivery]:
        """Deliveries from (entry id, fields) read elsewhere (a locking read); first
        deliveries. Undecodable entries are dead-lettered, as by ``read_new``."""
        rows = [_Entry(entry_id, fields) for entry_id, fields in entries]
        return await self._decode(rows, {entry_id: 1 for entry_id, _ in entries})

    async def own_pending(self, consumer: str, count: int) -> list[tuple[str, int]]:
        with redis_errors("xpending"):
            rows = await self._r.xpending(
                self.keys.jobs, self.keys.group, start="-", end="+", count=count,
                consumer=consumer,
            )
        return [(as_str(r.identifier), int(r.delivered)) for r in rows]

    async def claim(self, consumer: str, entry_ids: Sequence[str]) -> list[Delivery]:
        if not entry_ids:
            return []
        with redis_errors("xclaim"):
            entries = await self._r.xclaim(
                self.keys.jobs, self.keys.group, consumer, 0, list(entry_ids)
            )
        return await self._decode(entries, await self._delivery_counts(consumer, entries))

    async def autoclaim(
        self, consumer: str, min_idle_ms: int, cursor: str, count: int
    ) -> tuple[str, list[Delivery]]:
        with redis_errors("xautoclaim"):
            reply = await self._r.xautoclaim(
                self.keys.jobs, self.keys.group, consumer, min_idle_ms, cursor, count=count
            )
        next_cursor, entries = as_str(reply[0]), reply[1]
        return next_cursor, await self._decode(
            entries, await self._delivery_counts(consumer, entries)
        )

    async def renew(self, consumer: str, entry_ids: Sequence[str]) -> None:
        if not entry_ids:
            return
        with redis_errors("lease renewal"):
            await self._r.xclaim(
                self.keys.jobs, self.keys.group, consumer, 0, list(entry_ids), justid=True
            )

    async def release(self, consumer: str, entry_ids: Sequence[str], idle_ms: int) -> None:
        if not entry_ids:
            return
        with redis_errors("release"):
            await self._r.xclaim(
                self.keys.jobs, self.keys.group, consumer, 0, list(entry_ids),
                idle=max(0, idle_ms), justid=True,
            )

    async def ack(self, entry_ids: Sequence[str]) -> None:
        if not entry_ids:
            return
        ids = list(entry_ids)
        for attempt in (1, 2):
            with redis_errors("ack"):
                try:
                    async with self._r.pipeline(transaction=True) as pipe:
                        pipe.xack(self.keys.jobs, self.keys.group, ids)
                        pipe.xdel(self.keys.jobs, ids)
                    return
                except coredis.exceptions.ConnectionError:
                    # coredis retries single commands on a dead pooled connection, not
                    # pipelines; XACK + XDEL is idempotent, so one retry (on a fresh
                    # connection) is safe
                    if attempt == 2:
                        raise

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        await self._dead_letter_raw(
            delivery.entry_id, encode_job(delivery.job), reason, delivery.deliveries
        )

    # -- dead letters and figures ------------------------------------------------------------------

    async def dead_letters(self, count: int = 100) -> list[DeadLetter]:
        with redis_errors("xrange"):
            entries = await self._r.xrange(self.keys.dead, "-", "+", count=count)
        out = []
        for e in entries:
            f = {as_str(k): v for k, v in e.field_values.items()}
            try:
                job = _decoder.decode(f["m"])
            except (msgspec.DecodeError, KeyError):
                continue  # undecodable payloads stay visible with XRANGE, cannot be redriven
            out.append(
                DeadLetter(
                    dead_id=as_str(e.identifier), job=job, reason=as_str(f.get("reason", b"")),
                    deliveries=int(f.get("deliveries", 0)),
                    original_entry_id=as_str(f.get("entry_id", b"")),
                    dead_at=float(f.get("at", 0.0)),
                )
            )
        return out

    async def remove_dead_letter(self, dead_id: str) -> None:
        with redis_errors("xdel"):
            await self._r.xdel(self.keys.dead, [dead_id])

    async def pending_count(self) -> int:
        with redis_errors("xpending"):
            summary = await self._r.xpending(self.keys.jobs, self.keys.group)
        return int(summary.pending)

    async def backlog(self) -> int:
        """Entries in the job stream (queued + pending; acked entries are deleted)."""
        with redis_errors("xlen"):
            return int(await self._r.xlen(self.keys.jobs))

    # -- helpers -----------------------------------------------------------------------------------

    async def _delivery_counts(self, consumer: str, entries: Sequence[Any]) -> dict[str, int]:
        ids = sorted((as_str(e.identifier) for e in entries), key=_id_key)
        if not ids:
            return {}
        with redis_errors("xpending"):
            rows = await self._r.xpending(
                self.keys.jobs, self.keys.group, start=ids[0], end=ids[-1],
                count=max(len(ids), 1) * 4, consumer=consumer,
            )
        return {as_str(r.identifier): int(r.delivered) for r in rows}

    async def _decode(self, entries: Sequence[Any], counts: dict[str, int]) -> list[Delivery]:
        out: list[Delivery] = []
        for e in entries:
            if e is None:  # XCLAIM/XAUTOCLAIM may yield holes for deleted entries
                continue
            entry_id = as_str(e.identifier)
            payload = e.field_values.get(b"m") if e.field_values else None
            try:
                job = _decoder.decode(payload) if payload is not None else None
            except msgspec.DecodeError:
                job = None
            if job is None:
                await self._dead_letter_raw(
                    entry_id, payload or b"", "undecodable stream entry", counts.get(entry_id, 1)
                )
                continue
            out.append(Delivery(entry_id=entry_id, job=job, deliveries=counts.get(entry_id, 1)))
        return out

    async def _dead_letter_raw(
        self, entry_id: str, payload: bytes, reason: str, deliveries: int
    ) -> None:
        fields = {
            "m": payload, "reason": reason, "deliveries": str(deliveries),
            "entry_id": entry_id, "at": repr(time.time()),
        }
        with redis_errors("dead-letter xadd"):
            await self._r.xadd(self.keys.dead, fields)
        await self.ack([entry_id])


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@asynccontextmanager
async def open_queue(
    url: str,
    keys: Keys,
    *,
    stream_timeout: float,
    max_connections: int = 8,
    pool_timeout: float = 5.0,
) -> AsyncIterator[RedisQueue]:
    """A ``RedisQueue`` on a client of its own (``open_client``)."""
    async with open_client(url, stream_timeout=stream_timeout, max_connections=max_connections,
                           pool_timeout=pool_timeout) as client:
        yield RedisQueue(client, keys)

