"""The job queue on Redis Streams (coredis 6, anyio-native, runs under trio).

Two lanes, one stream each, one consumer group name on both (docs/ARCHITECTURE.md, "Lanes and
fairness"): ``{prefix}:jobs`` is the interactive lane (and holds every entry written before
lanes existed), ``{prefix}:jobs:batch`` the batch lane (storybook lines). A job goes to the
stream of its ``SpeechJob.lane``; a read for n free actors takes interactive entries first and
fills the rest from the batch lane (``scripts.READ_LANES``, and the locking read
``scripts.READ_AND_TRY``).

Entry ids of the two streams can be equal (both are ``<ms>-<seq>``), so what leaves this module
is a *delivery id*: the entry id itself for the interactive lane (unchanged from before lanes,
so entries already pending keep their ids), ``b:<ms>-<seq>`` for the batch lane. Every call
that takes ids (claim, renew, release, ack, dead-lettering) routes each id to its stream by
that prefix; the actors, the Ledger and the settlements treat ids as opaque strings, so none
of them knows about lanes. Own-pending recovery, XAUTOCLAIM and the figures cover both streams.

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

from protocols.messages import DeadLetter, Delivery, Lane, SpeechJob, StreamMessage
from protocols.redis import scripts
from protocols.redis.client import as_str, open_client, redis_errors
from protocols.redis.keys import Keys

__all__ = [
    "BATCH_PREFIX", "ENQUEUE_MARKER_TTL_MS", "LaneStream", "RedisQueue", "encode_job",
    "lane_of", "lane_streams", "open_queue",
]

ENQUEUE_MARKER_TTL_MS = 7 * 24 * 3600 * 1000
#: the delivery id of a batch-lane entry is this + its entry id (interactive: the entry id)
BATCH_PREFIX = "b:"
#: an XAUTOCLAIM cursor of ``autoclaim`` that is done: the caller's loop ends on it
_CURSOR_DONE = "0-0"

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(StreamMessage)


def encode_job(job: SpeechJob) -> bytes:
    return _encoder.encode(job)


class _Entry(NamedTuple):
    identifier: str
    field_values: dict[bytes, bytes]


class LaneStream(NamedTuple):
    """One lane's job stream and the prefix of its delivery ids."""

    lane: Lane
    stream: str
    prefix: str


def lane_streams(keys: Keys) -> tuple[LaneStream, LaneStream]:
    """Both lanes' streams in reading order: interactive first."""
    return (
        LaneStream(Lane.interactive, keys.jobs, ""),
        LaneStream(Lane.batch, keys.jobs_batch, BATCH_PREFIX),
    )


def lane_of(delivery_id: str) -> Lane:
    """The lane a delivery id (``Delivery.entry_id``) was read from."""
    return Lane.batch if delivery_id.startswith(BATCH_PREFIX) else Lane.interactive


class RedisQueue:
    """``JobQueue`` on one coredis client. Create one per actor incarnation (see
    docs/ARCHITECTURE.md)."""

    def __init__(self, client: coredis.Redis[bytes], keys: Keys) -> None:
        self._r = client
        self.keys = keys
        self.lanes = lane_streams(keys)
        self._enqueue_script = scripts.ENQUEUE.register(client)
        self._read_lanes = scripts.READ_LANES.register(client)

    @property
    def client(self) -> coredis.Redis[bytes]:
        return self._r

    # -- set-up and health -----------------------------------------------------------------------

    async def ping(self) -> None:
        with redis_errors("Redis ping"):
            await self._r.ping()

    async def ensure_group(self) -> None:
        """The consumer group on both lanes' streams (each made if missing)."""
        with redis_errors("cannot create consumer group", detail=True):
            for lane in self.lanes:
                try:
                    await self._r.xgroup_create(lane.stream, self.keys.group, "0", mkstream=True)
                except coredis.exceptions.StreamDuplicateConsumerGroupError:
                    pass

    # -- producing -------------------------------------------------------------------------------

    async def enqueue(self, jobs: Sequence[SpeechJob]) -> None:
        """Each job into its lane's stream, once (idempotent by job id whatever the lane), in
        one round trip."""
        if not jobs:
            return
        keys: list[str] = []
        args: list[Any] = [ENQUEUE_MARKER_TTL_MS]
        for j in jobs:
            keys += [self.keys.lane(j.lane), self.keys.enqueued(j.job_id)]
            args += [encode_job(j), j.job_id, j.cache_key, j.book_id]
        with redis_errors("enqueue"):
            await self._enqueue_script(keys=keys, args=args)

    async def add_raw(self, job: SpeechJob) -> str:
        """XADD unconditionally into the job's own lane (dead-letter redrive: the job is to run
        again), and (re)set its enqueue marker, so the orphan sweeper knows it is in the
        stream. Returns the delivery id."""
        fields = {"m": encode_job(job), "j": job.job_id, "k": job.cache_key}
        if job.book_id:
            fields["b"] = job.book_id
        with redis_errors("xadd"):
            entry = as_str(await self._r.xadd(self.keys.lane(job.lane), fields))
            await self._r.set(self.keys.enqueued(job.job_id), entry, px=ENQUEUE_MARKER_TTL_MS)
        return (BATCH_PREFIX if job.lane is Lane.batch else "") + entry

    async def enqueued(self, job_ids: Sequence[str]) -> set[str]:
        """The jobs among ``job_ids`` whose XADD happened (their enqueue marker exists)."""
        if not job_ids:
            return set()
        with redis_errors("mget"):
            values = await self._r.mget([self.keys.enqueued(j) for j in job_ids])
        return {j for j, v in zip(job_ids, values, strict=True) if v is not None}

    # -- consuming -------------------------------------------------------------------------------

    async def read_new(
        self, consumer: str, count: int, block_ms: int, *, lanes: Sequence[Lane] | None = None
    ) -> list[Delivery]:
        """Up to ``count`` new entries of ``lanes`` (default: both), interactive first, the
        batch lane filling the rest (one script, not blocking). When there are none and
        ``block_ms`` > 0: one XREADGROUP on the lanes' streams that blocks until any gets an
        entry. That one can return up to ``count`` per lane (only when both got entries
        between the script and the blocking read); interactive entries come first in the list
        either way."""
        chosen = [lane for lane in self.lanes if lanes is None or lane.lane in lanes]
        with redis_errors("xreadgroup"):
            rows = await self._read_lanes(
                keys=[lane.stream for lane in chosen],
                args=[self.keys.group, consumer, str(count)],
            )
        if rows:
            out: list[Delivery] = []
            for number, entry_id, flat in rows:
                fields = dict(zip(flat[::2], flat[1::2], strict=True))
                out += await self._decode([_Entry(as_str(entry_id), fields)],
                                          {as_str(entry_id): 1}, chosen[int(number) - 1])
            return out
        if block_ms <= 0:
            return []
        with redis_errors("xreadgroup"):
            reply = await self._r.xreadgroup(
                self.keys.group, consumer, streams={lane.stream: ">" for lane in chosen},
                count=count, block=block_ms,
            )
        if not reply:
            return []
        out = []
        for lane in chosen:  # interactive first
            entries = reply.get(lane.stream.encode()) or reply.get(lane.stream) or ()
            counts = dict.fromkeys((as_str(e.identifier) for e in entries), 1)
            out += await self._decode(entries, counts, lane)
        return out

    async def decode(self, entries: Sequence[tuple[str, dict[bytes, bytes]]]) -> list[Delivery]:
        """Deliveries from (delivery id, fields) read elsewhere (the locking read, whose ids
        carry their lane's prefix); first deliveries. Undecodable entries are dead-lettered,
        as by ``read_new``."""
        out: list[Delivery] = []
        fields = dict(entries)
        for lane, ids in self._by_lane([entry_id for entry_id, _ in entries]):
            rows = [_Entry(raw, fields[lane.prefix + raw]) for raw in ids]
            out += await self._decode(rows, dict.fromkeys(ids, 1), lane)
        order = {entry_id: i for i, (entry_id, _) in enumerate(entries)}
        return sorted(out, key=lambda d: order[d.entry_id])

    async def own_pending(self, consumer: str, count: int) -> list[tuple[str, int]]:
        """(delivery id, deliveries) pending for this consumer, oldest first in each lane,
        interactive first: up to ``count`` per lane."""
        out: list[tuple[str, int]] = []
        for lane in self.lanes:
            with redis_errors("xpending"):
                rows = await self._r.xpending(
                    lane.stream, self.keys.group, start="-", end="+", count=count,
                    consumer=consumer,
                )
            out += [(lane.prefix + as_str(r.identifier), int(r.delivered)) for r in rows]
        return out

    async def claim(self, consumer: str, entry_ids: Sequence[str]) -> list[Delivery]:
        out: list[Delivery] = []
        for lane, ids in self._by_lane(entry_ids):
            with redis_errors("xclaim"):
                entries = await self._r.xclaim(lane.stream, self.keys.group, consumer, 0, ids)
            out += await self._decode(
                entries, await self._delivery_counts(lane, consumer, entries), lane
            )
        return out

    async def autoclaim(
        self, consumer: str, min_idle_ms: int, cursor: str, count: int
    ) -> tuple[str, list[Delivery]]:
        """XAUTOCLAIM over both lanes, interactive first, up to ``count`` entries per call.
        The cursor says where to go on: an interactive entry id, then ``b:<entry id>`` in the
        batch lane; ``0-0`` once both are done (start with ``0-0``)."""
        lane = self.lanes[1] if cursor.startswith(BATCH_PREFIX) else self.lanes[0]
        raw = cursor.removeprefix(lane.prefix)
        out: list[Delivery] = []
        while True:
            with redis_errors("xautoclaim"):
                reply = await self._r.xautoclaim(
                    lane.stream, self.keys.group, consumer, min_idle_ms, raw,
                    count=count - len(out),
                )
            raw, entries = as_str(reply[0]), reply[1]
            out += await self._decode(
                entries, await self._delivery_counts(lane, consumer, entries), lane
            )
            if raw not in ("0-0", "0"):
                return lane.prefix + raw, out
            if lane is self.lanes[-1]:
                return _CURSOR_DONE, out
            lane, raw = self.lanes[1], "0-0"  # on to the batch lane
            if len(out) >= count:
                return lane.prefix + raw, out

    async def renew(self, consumer: str, entry_ids: Sequence[str]) -> None:
        for lane, ids in self._by_lane(entry_ids):
            with redis_errors("lease renewal"):
                await self._r.xclaim(lane.stream, self.keys.group, consumer, 0, ids,
                                     justid=True)

    async def release(
        self, consumer: str, entry_ids: Sequence[str], idle_ms: int,
        retry_count: int | None = None,
    ) -> None:
        for lane, ids in self._by_lane(entry_ids):
            with redis_errors("release"):
                await self._r.xclaim(
                    lane.stream, self.keys.group, consumer, 0, ids, idle=max(0, idle_ms),
                    justid=True,
                    retrycount=max(0, retry_count) if retry_count is not None else None,
                )

    async def ack(self, entry_ids: Sequence[str]) -> None:
        """XACK + XDEL of each lane's ids, all in one MULTI."""
        by_lane = self._by_lane(entry_ids)
        if not by_lane:
            return
        for attempt in (1, 2):
            with redis_errors("ack"):
                try:
                    async with self._r.pipeline(transaction=True) as pipe:
                        for lane, ids in by_lane:
                            pipe.xack(lane.stream, self.keys.group, ids)
                            pipe.xdel(lane.stream, ids)
                    return
                except coredis.exceptions.ConnectionError:
                    # coredis retries single commands on a dead pooled connection, not
                    # pipelines; XACK + XDEL is idempotent, so one retry (on a fresh
                    # connection) is safe
                    if attempt == 2:
                        raise

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """The letter keeps the delivery id (``b:`` for the batch lane) and the job, whose
        ``lane`` a redrive (``add_raw``) puts it back into."""
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

    async def dead_letter_count(self) -> int:
        """Entries in the dead-letter stream (XLEN)."""
        with redis_errors("xlen"):
            return int(await self._r.xlen(self.keys.dead))

    async def remove_dead_letter(self, dead_id: str) -> None:
        with redis_errors("xdel"):
            await self._r.xdel(self.keys.dead, [dead_id])

    async def pending_count(self) -> int:
        """Entries delivered and not yet acked, both lanes."""
        return sum(pending for _, pending in (await self.lane_figures()).values())

    async def backlog(self) -> int:
        """Entries in the job streams (queued + pending; acked entries are deleted)."""
        return sum(length for length, _ in (await self.lane_figures()).values())

    async def lane_figures(self) -> dict[Lane, tuple[int, int]]:
        """Per lane: (entries in its stream, of which pending). A lane whose stream or group
        does not exist yet (no worker started since lanes came) counts 0."""
        out: dict[Lane, tuple[int, int]] = {}
        for lane in self.lanes:
            with redis_errors("xlen"):
                length = int(await self._r.xlen(lane.stream))
            pending = 0
            with redis_errors("xpending"):
                try:
                    pending = int((await self._r.xpending(lane.stream, self.keys.group))
                                  .pending)
                except coredis.exceptions.StreamConsumerGroupError:
                    pass  # no such stream or group yet
            out[lane.lane] = (length, pending)
        return out

    # -- helpers -----------------------------------------------------------------------------------

    def _by_lane(self, entry_ids: Sequence[str]) -> list[tuple[LaneStream, list[str]]]:
        """Delivery ids as (lane, its entry ids), lanes without ids left out."""
        batch = [i.removeprefix(BATCH_PREFIX) for i in entry_ids if lane_of(i) is Lane.batch]
        interactive = [i for i in entry_ids if lane_of(i) is Lane.interactive]
        return [(lane, ids) for lane, ids in zip(self.lanes, (interactive, batch), strict=True)
                if ids]

    async def _delivery_counts(
        self, lane: LaneStream, consumer: str, entries: Sequence[Any]
    ) -> dict[str, int]:
        ids = sorted((as_str(e.identifier) for e in entries if e is not None), key=_id_key)
        if not ids:
            return {}
        with redis_errors("xpending"):
            rows = await self._r.xpending(
                lane.stream, self.keys.group, start=ids[0], end=ids[-1],
                count=max(len(ids), 1) * 4, consumer=consumer,
            )
        return {as_str(r.identifier): int(r.delivered) for r in rows}

    async def _decode(
        self, entries: Sequence[Any], counts: dict[str, int], lane: LaneStream
    ) -> list[Delivery]:
        """Entries of ``lane``'s stream (``counts`` by entry id) as deliveries (delivery ids);
        undecodable ones are dead-lettered."""
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
                    lane.prefix + entry_id, payload or b"", "undecodable stream entry",
                    counts.get(entry_id, 1),
                )
                continue
            out.append(Delivery(entry_id=lane.prefix + entry_id, job=job,
                                deliveries=counts.get(entry_id, 1)))
        return out

    async def _dead_letter_raw(
        self, entry_id: str, payload: bytes, reason: str, deliveries: int
    ) -> None:
        """XADD the letter (``entry_id``: the delivery id, so ``b:`` names the batch lane),
        then ack the entry."""
        fields = {
            "m": payload, "reason": reason, "deliveries": str(deliveries),
            "entry_id": entry_id, "lane": lane_of(entry_id).value, "at": repr(time.time()),
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

