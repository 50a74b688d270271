"""A job's audio while it is made: the TTS actor publishes it, followers relay it.

**Publishing** (``AttemptPublisher``, used by ``actors/pipeline/tts_actor.py`` for a job
submitted with ``stream``): each chunk a provider hands out (``protocols/live.py``) goes to the
job's live stream in Redis under the attempt's own token, then an end entry with the clip's
size; an attempt that fails or is cancelled writes an abort entry. Publishing is best effort:
a Redis error stops it for that attempt and never fails the job (followers then fall back to
the stored clip). The clip itself is still stored, cached and charged once by the Storer.

**Following** (``LiveFollower.follow``, ``WebContext.follow_audio``): read the live stream from
its start until the end of an attempt, yielding bytes as they come; when the job ends without
a live stream (a cache hit, an identical job generated elsewhere, a job submitted without
``stream``) or the stream has a gap (trimmed or expired), wait for the job and yield its stored
clip. Every byte is yielded once, in order: the follower remembers what it sent, and when a new
attempt (a redelivery) or the stored clip takes over, the bytes it already sent must match the
new ones (then it goes on from where it was); otherwise it ends with ``LiveAudioChanged`` (the
client has a truncated response and can fetch the stored clip). Reads block a bounded time;
the job row is looked at between them; the whole follow is bounded by ``CHORUS_LIVE_WAIT_S``.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator

import trio

from protocols.errors import (
    ChorusError,
    FollowTimeout,
    JobNotSucceeded,
    LiveAudioChanged,
    NotFound,
)
from protocols.live import LiveEvent, LiveKind, LiveReader, LiveWriter
from protocols.messages import Job, JobStatus
from protocols.ports import BlobStore, JobStore
from protocols.settings import Settings

log = logging.getLogger("chorus.live")

#: how long one blocking read of a live stream waits before the job row is looked at
FOLLOW_BLOCK_MS = 500


class AttemptPublisher:
    """One attempt's chunks onto its job's live stream (see the module docstring)."""

    def __init__(self, writer: LiveWriter, job_id: str, timeout_s: float) -> None:
        self._writer = writer
        self.job_id = job_id
        self.attempt = secrets.token_hex(8)
        self._timeout_s = timeout_s
        self.offset = 0
        self.broken = False

    async def _write(self, what: str, call) -> None:  # type: ignore[no-untyped-def]
        if self.broken:
            return
        try:
            with trio.fail_after(self._timeout_s):
                await call()
        except (ChorusError, trio.TooSlowError) as exc:
            self.broken = True  # the followers fall back to the stored clip
            log.warning("job %s: live audio not published (%s): %s", self.job_id, what, exc)

    async def sink(self, data: bytes) -> None:
        """A ``ChunkSink``: the next chunk of the clip."""
        if not data:
            return
        offset = self.offset
        self.offset += len(data)
        await self._write("chunk", lambda: self._writer.chunk(
            self.job_id, self.attempt, offset, data))

    async def end(self, size: int) -> None:
        """The clip is complete (``size`` bytes: all of them were handed out, else abort)."""
        if size != self.offset:
            log.warning("job %s: %d bytes streamed, the clip has %d: aborted", self.job_id,
                        self.offset, size)
            await self.abort()
            return
        await self._write("end", lambda: self._writer.end(self.job_id, self.attempt, size))

    async def abort(self) -> None:
        """The attempt gave up; shielded (runs while the actor is cancelled) and bounded."""
        with trio.CancelScope(shield=True):
            await self._write("abort", lambda: self._writer.abort(self.job_id, self.attempt))
        self.broken = True


class _Splice:
    """What has been sent, and where the attempt being relayed stands in it."""

    def __init__(self) -> None:
        self.sent = bytearray()
        self.attempt: str | None = None
        self.got = 0  # bytes of the current attempt seen

    def take(self, attempt: str, offset: int, data: bytes) -> bytes | None:
        """The new bytes to send from ``data`` at ``offset`` of ``attempt``; None: a gap (the
        entries before it are gone). Raises ``LiveAudioChanged`` when bytes already sent differ."""
        if attempt != self.attempt:
            self.attempt, self.got = attempt, 0
        if offset > self.got:
            return None
        data = data[self.got - offset:]  # a repeated chunk: only what is new
        start, end = self.got, self.got + len(data)
        self.got = end
        overlap = min(end, len(self.sent)) - start
        if overlap > 0 and self.sent[start:start + overlap] != data[:overlap]:
            raise LiveAudioChanged(
                "a new attempt of the job made other audio than the bytes already sent"
            )
        fresh = data[max(overlap, 0):]
        self.sent += fresh
        return bytes(fresh)


class LiveFollower:
    """``follow``: a job's audio as it is made (the ``WebContext.follow_audio`` of a front)."""

    def __init__(
        self, settings: Settings, *, store: JobStore, blobs: BlobStore, reader: LiveReader
    ) -> None:
        self.settings = settings
        self._store = store
        self._blobs = blobs
        self._reader = reader
        self._io_s = settings.redis_timeout_s + FOLLOW_BLOCK_MS / 1000

    async def follow(self, job: Job) -> AsyncIterator[bytes]:
        """The audio of ``job`` (the caller's own, already looked up), chunk by chunk to its
        last byte. Raises ``JobNotSucceeded`` (it ended without audio), ``LiveAudioChanged``,
        ``FollowTimeout``, ``NotFound`` (its audio is gone) or ``QueueUnavailable``."""
        deadline = trio.current_time() + self.settings.live_wait_s
        splice = _Splice()
        after, live, current = "0", True, job
        while not current.status.terminal:
            if trio.current_time() > deadline:
                raise FollowTimeout(f"job {job.id} did not finish within "
                                    f"{self.settings.live_wait_s:g} s")
            if live:
                events = await self._read(job.id, after, FOLLOW_BLOCK_MS)
                for event in events:
                    after = event.id
                    fresh, done = self._apply(splice, event)
                    if fresh is None:
                        live = False  # a gap: the stored clip takes over
                        break
                    if fresh:
                        yield fresh
                    if done:
                        return
                if events and live:
                    continue  # audio is flowing: the job is alive
            else:
                await trio.sleep(FOLLOW_BLOCK_MS / 1000)
            current = await self._job(job)
        if current.status is not JobStatus.succeeded:
            raise JobNotSucceeded(
                f"job {job.id} is {current.status.value}"
                + (f" ({current.error_code})" if current.error_code else ""),
                job_status=current.status.value, error_code=current.error_code,
            )
        if live:  # what is left of a live stream (its end may have come just before)
            for event in await self._read(job.id, after, 0):
                fresh, done = self._apply(splice, event)
                if fresh is None:
                    break
                if fresh:
                    yield fresh
                if done:
                    return
        fresh = splice.take("stored", 0, await self._stored(current))
        if fresh:
            yield fresh

    @staticmethod
    def _apply(splice: _Splice, event: LiveEvent) -> tuple[bytes | None, bool]:
        """(new bytes, or None for a gap; whether the relayed attempt is complete)."""
        if event.kind is LiveKind.chunk:
            return splice.take(event.attempt, event.offset, event.data), False
        if event.attempt != splice.attempt:  # the end or abort of an attempt not relayed
            return (None, False) if event.kind is LiveKind.end else (b"", False)
        if event.kind is LiveKind.abort:
            splice.attempt, splice.got = None, 0  # wait for the next attempt
            return b"", False
        if event.offset != splice.got:
            return None, False
        if splice.got < len(splice.sent):  # a shorter clip than what was sent
            raise LiveAudioChanged("a new attempt of the job made a shorter clip")
        return b"", True

    async def _read(self, job_id: str, after: str, block_ms: int) -> list[LiveEvent]:
        with trio.fail_after(self._io_s):
            return list(await self._reader.read(job_id, after, block_ms))

    async def _job(self, job: Job) -> Job:
        with trio.fail_after(2 * self.settings.db_timeout_s):
            current = await self._store.get_job(job.id, owner=job.owner)
        if current is None:
            raise NotFound(f"No job {job.id!r}.")
        return current

    async def _stored(self, job: Job) -> bytes:
        with trio.fail_after(2 * self.settings.db_timeout_s):
            audio = await self._store.get_audio(job.audio_id or "", owner=job.owner)
        if audio is None:
            raise NotFound(f"job {job.id} has no audio")
        try:
            with trio.fail_after(self.settings.blob_timeout_s):
                return await self._blobs.get(audio.path)
        except FileNotFoundError as exc:
            raise NotFound(f"the audio of job {job.id} is missing") from exc
