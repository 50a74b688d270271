"""The job queue on Redis Streams (coredis 6, anyio-native, runs under trio).

Rules this module keeps (DESIGN.md "Redis rules"):
- every write is idempotent, because a cancelled or timed-out call has an unknown outcome;
- enqueue is idempotent by job id (a marker key set in the same Lua call as the XADD);
- ack is XACK + XDEL in one MULTI; the stream is never trimmed with a plain MAXLEN;
- dead-lettering is XADD to the dead-letter stream *then* ack (a crash between duplicates a
  dead letter, never loses a job);
- entries that cannot be decoded are dead-lettered here, so actors only see typed jobs;
- coredis and builtin connection errors become ``QueueUnavailable``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

import coredis
import coredis.exceptions
import msgspec

from protocols.errors import QueueUnavailable
from protocols.messages import DeadLetter, Delivery, SpeechJob, StreamMessage
from protocols.redis.keys import Keys

ENQUEUE_MARKER_TTL_MS = 7 * 24 * 3600 * 1000

# KEYS[1] = stream, KEYS[2..n] = one marker per job; ARGV[1] = marker ttl, ARGV[2..n] = payloads.
# KEYS = the stream, then each job's enqueue marker; ARGV = marker ttl, then per job: payload,
# job id, cache key. The id and key ride along in plain fields, for the locking read
# (``protocols.redis.coordination``, _READ_AND_TRY).
_ENQUEUE_LUA = """
local added = 0
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    local a = 3 * (i - 2) + 2
    local id = redis.call('XADD', KEYS[1], '*', 'm', ARGV[a], 'j', ARGV[a + 1], 'k', ARGV[a + 2])
    redis.call('SET', KEYS[i], id, 'PX', ARGV[1])
    added = added + 1
  end
end
return added
"""

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(StreamMessage)

_REDIS_ERRORS = (
    coredis.exceptions.ConnectionError,
    coredis.exceptions.RedisError,
    ConnectionError,
    TimeoutError,
    OSError,
)

REDIS_ERRORS = _REDIS_ERRORS


def encode_job(job: SpeechJob) -> bytes:
    return _encoder.encode(job)


class _Entry(NamedTuple):
    identifier: str
    field_values: dict[bytes, bytes]


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisQueue:
    """``JobQueue`` on one coredis client. Create one per actor incarnation (see DESIGN.md)."""

    def __init__(self, client: coredis.Redis[bytes], keys: Keys) -> None:
        self._r = client
        self.keys = keys
        self._enqueue_script = client.register_script(_ENQUEUE_LUA)

    @property
    def client(self) -> coredis.Redis[bytes]:
        return self._r

    # -- set-up and health -----------------------------------------------------------------------

    async def ping(self) -> None:
        try:
            await self._r.ping()
        except _REDIS_ERRORS as exc:
            raise QueueUnavailable(f"Redis ping failed: {type(exc).__name__}") from exc

    async def ensure_group(self) -> None:
        try:
            await self._r.xgroup_create(self.keys.jobs, self.keys.group, "0", mkstream=True)
        except coredis.exceptions.StreamDuplicateConsumerGroupError:
            pass
        except _REDIS_ERRORS as exc:
            raise QueueUnavailable(f"cannot create consumer group: {exc}") from exc

    # -- producing -------------------------------------------------------------------------------

    async def enqueue(self, jobs: Sequence[SpeechJob]) -> None:
        if not jobs:
            return
        keys = [self.keys.jobs, *(self.keys.enqueued(j.job_id) for j in jobs)]
        args: list[Any] = [ENQUEUE_MARKER_TTL_MS]
        for j in jobs:
            args += [encode_job(j), j.job_id, j.cache_key]
        try:
            await self._enqueue_script(keys=keys, args=args)
        except _REDIS_ERRORS as exc:
            raise QueueUnavailable(f"enqueue failed: {type(exc).__name__}") from exc

    async def add_raw(self, job: SpeechJob) -> str:
        """XADD unconditionally (dead-letter redrive: the job is to run again), and (re)set its
        enqueue marker, so the orphan sweeper knows it is in the stream."""
        try:
            fields = {"m": encode_job(job), "j": job.job_id, "k": job.cache_key}
            entry = _s(await self._r.xadd(self.keys.jobs, fields))
            await self._r.set(self.keys.enqueued(job.job_id), entry, px=ENQUEUE_MARKER_TTL_MS)
            return entry
        except _REDIS_ERRORS as exc:
            raise QueueUnavailable(f"xadd failed: {type(exc).__name__}") from exc

    async def enqueued(self, job_ids: Sequence[str]) -> set[str]:
        """The jobs among ``job_ids`` whose XADD happened (their enqueue marker exists)."""
        if not job_ids:
            return set()
        try:
            values = await self._r.mget([self.keys.enqueued(j) for j in job_ids])
        except _REDIS_ERRORS as exc:
            raise QueueUnavailable(f"mget failed: {type(exc).__name__}") from exc
        return {j for j, v in zip(job_ids, values, strict=True) if v is not None}

    # -- consuming -------------------------------------------------------------------------------

    async def read_new(self, consumer: str, count: int, block_ms: int) -> list[Delivery]:
        try:
            reply = await self._r.xreadgroup(
                self.keys.group, consumer, streams={self.keys.jobs: ">"}, count=count,
                block=block_ms,
            )
        except _REDIS_ERRORS as exc:
            raise QueueUnavailable(f"xreadgroup failed: {type(exc).__name__}") from exc
        if not reply:
            return []
        entries = next(iter(reply.values()))
        return await self._decode(entries, dict.fromkeys((_s(e.identifier) for e in entries), 1))

    async def decode(self, entries: Sequence[tuple[str, dict[bytes, bytes]]]) -> list[Delivery]:
        """Deliveries from (entry id, fields) read elsewhere (a locking read); first
        deliveries. Undecodable entries are dead-lettered, as by ``read_new``."""
        rows = [_Entry(entry_id, fields) for entry_id, fields in entries]
        return await self._decode(rows, {entry_id: 1 for entry_id, _ in entries})

    async def own_pending(self, consumer: str, count: int) -> list[tuple[str, int]]:
        try:
            rows = await self._r.xpending(
                self.keys.jobs, self.keys.group, start="-", end="+", count=count,
                consumer=consumer,
            )
        except _REDIS_ERRORS as exc:
            raise QueueUnavailable(f"xpending failed: {type(exc).__name__}") from exc
        return [(_s(r.identifier), int(r.delivered)) for r in rows]

    async def claim(self, consumer: str, entry_ids: Sequence[str]) -> list[Delivery]:
        if not entry_ids:
            return []
        try:
            entries = await self._r.xclaim(
                self.keys.jobs, self.keys.group, consumer, 0, list(entry_ids)
            )
        except _REDIS_ERRORS as exc:
            raise QueueUnavailable(f"xclaim failed: {type(exc).__name__}") from exc
        return await self._decode(entries, await self._delivery_counts(consumer, entries))

    async def autoclaim(
        self, consumer: str, min_idle_ms: int, cursor: str, count: int
    ) -> tuple[str, list[Delivery]]:
        try:
            reply = await self._r.xautoclaim(
                self.keys.jobs, self.keys.group, consumer, min_idle_ms, cursor, count=count
            )
        except _REDIS_ERRORS as exc:
            raise QueueUnavailable(f"xautoclaim failed: {type(exc).__name__}") from exc
        next_cursor, entries = _s(reply[0]), reply[1]
        return next_cursor, await self._decode(
            entries, await self._delivery_counts(consumer, entries)
        )

    async def renew(self, consumer: str, entry_ids: Sequence[str]) -> None:
        if not entry_ids:
            return
        try:
            await self._r.xclaim(
                self.keys.jobs, self.keys.group, consumer, 0, list(entry_ids), justid=True
            )
        except _REDIS_ERRORS as exc:
            raise QueueUnavailable(f"lease renewal failed: {type(exc).__name__}") from exc

    async def release(self, consumer: str, entry_ids: Sequence[str], idle_ms: int) -> None:
        if not entry_ids:
            return
        try:
            await self._r.xclaim(
                self.keys.jobs, self.keys.group, consumer, 0, list(entry_ids),
                idle=max(0, idle_ms), justid=True,
            )
        except _REDIS_ERRORS as exc:
            raise QueueUnavailable(f"release failed: {type(exc).__name__}") from exc

    async def ack(self, entry_ids: Sequence[str]) -> None:
        if not entry_ids:
            return
        ids = list(entry_ids)
        for attempt in (1, 2):
            try:
                async with self._r.pipeline(transaction=True) as pipe:
                    pipe.xack(self.keys.jobs, self.keys.group, ids)
                    pipe.xdel(self.keys.jobs, ids)
                return
            except coredis.exceptions.ConnectionError as exc:
                # coredis retries single commands on a dead pooled connection, not pipelines;
                # XACK + XDEL is idempotent, so one retry (on a fresh connection) is safe
                if attempt == 2:
                    raise QueueUnavailable(f"ack failed: {type(exc).__name__}") from exc
            except _REDIS_ERRORS as exc:
                raise QueueUnavailable(f"ack failed: {type(exc).__name__}") from exc

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        await self._dead_letter_raw(
            delivery.entry_id, encode_job(delivery.job), reason, delivery.deliveries
        )

    # -- dead letters and figures ------------------------------------------------------------------

    async def dead_letters(self, count: int = 100) -> list[DeadLetter]:
        try:
            entries = await self._r.xrange(self.keys.dead, "-", "+", count=count)
        except _REDIS_ERRORS as exc:
            raise QueueUnavailable(f"xrange failed: {type(exc).__name__}") from exc
        out = []
        for e in entries:
            f = {_s(k): v for k, v in e.field_values.items()}
            try:
                job = _decoder.decode(f["m"])
            except (msgspec.DecodeError, KeyError):
                continue  # undecodable payloads stay visible with XRANGE, cannot be redriven
            out.append(
                DeadLetter(
                    dead_id=_s(e.identifier), job=job, reason=_s(f.get("reason", b"")),
                    deliveries=int(f.get("deliveries", 0)),
                    original_entry_id=_s(f.get("entry_id", b"")),
                    dead_at=float(f.get("at", 0.0)),
                )
            )
        return out

    async def remove_dead_letter(self, dead_id: str) -> None:
        try:
            await self._r.xdel(self.keys.dead, [dead_id])
        except _REDIS_ERRORS as exc:
            raise QueueUnavailable(f"xdel failed: {type(exc).__name__}") from exc

    async def pending_count(self) -> int:
        try:
            summary = await self._r.xpending(self.keys.jobs, self.keys.group)
        except _REDIS_ERRORS as exc:
            raise QueueUnavailable(f"xpending failed: {type(exc).__name__}") from exc
        return int(summary.pending)

    async def backlog(self) -> int:
        """Entries in the job stream (queued + pending; acked entries are deleted)."""
        try:
            return int(await self._r.xlen(self.keys.jobs))
        except _REDIS_ERRORS as exc:
            raise QueueUnavailable(f"xlen failed: {type(exc).__name__}") from exc

    # -- helpers -----------------------------------------------------------------------------------

    async def _delivery_counts(self, consumer: str, entries: Sequence[Any]) -> dict[str, int]:
        ids = sorted((_s(e.identifier) for e in entries), key=_id_key)
        if not ids:
            return {}
        try:
            rows = await self._r.xpending(
                self.keys.jobs, self.keys.group, start=ids[0], end=ids[-1],
                count=max(len(ids), 1) * 4, consumer=consumer,
            )
        except _REDIS_ERRORS as exc:
            raise QueueUnavailable(f"xpending failed: {type(exc).__name__}") from exc
        return {_s(r.identifier): int(r.delivered) for r in rows}

    async def _decode(self, entries: Sequence[Any], counts: dict[str, int]) -> list[Delivery]:
        out: list[Delivery] = []
        for e in entries:
            if e is None:  # XCLAIM/XAUTOCLAIM may yield holes for deleted entries
                continue
            entry_id = _s(e.identifier)
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
        try:
            await self._r.xadd(self.keys.dead, fields)
        except _REDIS_ERRORS as exc:
            raise QueueUnavailable(f"dead-letter xadd failed: {type(exc).__name__}") from exc
        await self.ack([entry_id])


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class _SlotKeepingPool(coredis.ConnectionPool):
    """coredis 6.9 loses a pool slot whenever a connection dies while leased (a blocking read
    killed by CLIENT KILL, a proxy reset, a timeout): ``release()`` re-queues only usable
    connections. Give the slot back, so dead connections cannot exhaust the pool."""

    def release(self, connection: Any) -> None:
        usable = connection.usable
        super().release(connection)
        slots = self._available_connections
        if not usable and not slots.full():
            slots.append_nowait(None)  # as coredis does for a connection that dies idle


@asynccontextmanager
async def open_client(
    url: str,
    *,
    stream_timeout: float,
    max_connections: int = 8,
    pool_timeout: float = 5.0,
) -> AsyncIterator[coredis.Redis[bytes]]:
    """A coredis client of its own (coredis leaks a pool slot per dead blocking connection: the
    pool here gives it back, and a fresh client per actor incarnation bounds whatever else might
    leak). ``stream_timeout`` must exceed any BLOCK. What leaves the block comes out as the one
    exception it is (Redis errors as ``QueueUnavailable``), not as coredis' exception group."""
    pool = _SlotKeepingPool.from_url(
        url,
        decode_responses=False,
        stream_timeout=stream_timeout,
        connect_timeout=min(stream_timeout, 5.0),
        max_connections=max_connections,
        timeout=pool_timeout,
    )
    client: coredis.Redis[bytes] = coredis.Redis(connection_pool=pool, decode_responses=False)
    try:
        async with client:
            yield client
    except BaseExceptionGroup as group:
        # coredis' pool owns a task group, so anything leaving this block arrives as a group;
        # give callers back the one exception they raised (or a typed one for Redis errors)
        sole = _sole(group)
        if sole is None:
            raise
        if isinstance(sole, _REDIS_ERRORS):
            raise QueueUnavailable(f"Redis connection failed: {type(sole).__name__}") from sole
        raise sole  # noqa: B904 - the original exception, with its own traceback


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


def _sole(group: BaseExceptionGroup[Any]) -> BaseException | None:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return exc
