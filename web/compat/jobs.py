"""A compatible convert's job, from submit to clip: wait for it to end (the owner's event
stream, else the store with backoff; ``CHORUS_SYNC_WAIT_S`` at most), then its stored clip.

Waiting holds no part of the job: a client that goes away leaves the job queued or running as
any other (it is durable in the stream and Postgres), and a later identical convert finds its
audio in the cache. A blocking event read is never cancelled midway (coredis leaks a pool slot
for each cancelled blocking read, ``docs/ARCHITECTURE.md``): it blocks at most a second and the
deadline is checked between reads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import trio

from protocols.errors import ChorusError, NotFound
from protocols.messages import Audio, Job, JobStatus
from web.problems import AudioMissing

if TYPE_CHECKING:
    from web.context import WebContext

#: blocking event reads at once per waiter (one per compat blueprint: two per process, the SSE
#: pool's spare connections, ``sse_max_streams + 2``); more waits poll the store instead
EVENT_WAITS = 1
BLOCK_MS = 1000
RECHECK_S = 2.0  # the store is read again this often while waiting on events (a lost event)
POLL_FIRST_S = 0.005
POLL_MAX_S = 0.1
CHUNK = 16 * 1024


class SyncWaitTimeout(ChorusError):
    """Its message names the caller's own job (safe to answer: ``public``)."""

    code = "sync_wait_timeout"
    status = 504
    title = "The job did not finish in time; it is still running"
    public = True


class JobFailed(ChorusError):
    """The job ended without audio. Its stored error is what ``GET /v1/jobs/<id>`` shows the
    owner too, so the message is safe to answer (``public``)."""

    code = "job_failed"
    status = 502
    title = "The speech job failed"
    public = True


class Waiter:
    """One per blueprint (per app): it keeps its own limit on event reads."""

    def __init__(self, ctx: WebContext) -> None:
        self._ctx = ctx
        self._event_reads = trio.Semaphore(EVENT_WAITS)

    async def finished(self, job: Job) -> Job:
        """``job`` once it has ended. Raises ``SyncWaitTimeout`` (504, naming the job)."""
        if job.status.terminal:
            return job
        deadline = trio.current_time() + self._ctx.settings.sync_wait_s
        done: Job | None = None
        if self._ctx.event_log is not None and self._take_event_read():
            try:
                done = await self._by_events(job, deadline)
            finally:
                self._event_reads.release()
        if done is None:
            with trio.move_on_at(deadline):
                done = await self._by_polling(job)
        if done is None:
            raise SyncWaitTimeout(
                f"Job {job.id} is not finished after {self._ctx.settings.sync_wait_s:g} s;"
                f" follow it at /v1/jobs/{job.id}.", job_id=job.id,
            )
        return done

    def _take_event_read(self) -> bool:
        try:
            self._event_reads.acquire_nowait()
        except trio.WouldBlock:
            return False
        return True

    async def _current(self, job: Job) -> Job:
        now = await self._ctx.store.get_job(job.id, owner=job.owner)
        if now is None:
            raise NotFound(f"No job {job.id!r}.")
        return now

    async def _by_events(self, job: Job, deadline: float) -> Job | None:
        """The job once its terminal event is read (None: the deadline passed, or the event
        stream failed and the caller polls instead)."""
        source = self._ctx.event_log
        assert source is not None
        stream = source.owner_stream(job.owner)
        try:
            after = await source.tail(stream)  # before the state: nothing falls between
            now = await self._current(job)
            checked = trio.current_time()
            while not now.status.terminal:
                left = deadline - trio.current_time()
                if left <= 0:
                    return None
                block = max(1, min(BLOCK_MS, int(left * 1000)))
                for event in await source.read(stream, after, count=100, block_ms=block):
                    after = event.id
                    if event.subject == job.id and event.kind.ends_job:
                        return await self._current(job)
                if trio.current_time() - checked >= RECHECK_S:
                    now, checked = await self._current(job), trio.current_time()
            return now
        except NotFound:
            raise
        except ChorusError:
            return None

    async def _by_polling(self, job: Job) -> Job:
        pause = POLL_FIRST_S
        while True:
            now = await self._current(job)
            if now.status.terminal:
                return now
            await trio.sleep(pause)
            pause = min(POLL_MAX_S, pause * 2)


async def stored_clip(ctx: WebContext, job: Job) -> tuple[Audio, bytes]:
    """A finished job's audio row and bytes; ``JobFailed`` if it ended without audio. A clip
    sent recently comes from ``ctx.clips`` (no look-up, no read)."""
    if job.status is not JobStatus.succeeded or job.audio_id is None:
        raise JobFailed(
            f"Job {job.id} {job.status.value}: {job.error_code or 'no audio'}"
            f"{': ' + job.error_message if job.error_message else ''}",
            job_id=job.id, error=job.error_code,
        )
    if (known := ctx.clips.get(job.audio_id, job.owner)) is not None:
        return known  # sent recently (``web/compat/clips.py``: rows and blobs never change)
    audio = await ctx.store.get_audio(job.audio_id, owner=job.owner)
    if audio is None:
        raise AudioMissing(f"job {job.id} names audio {job.audio_id}, which has no row")
    try:
        data = await ctx.blobs.get(audio.path)
    except FileNotFoundError as exc:
        raise AudioMissing(f"audio {audio.id} has no file at {audio.path}") from exc
    ctx.clips.put(audio, data)
    return audio, data


async def chunks(data: bytes, size: int = CHUNK) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def headers(job: Job) -> dict[str, str]:
    """ElevenLabs' response headers: the request id (the job id, which ``/v1/history`` and
    ``/v1/jobs`` know too) and what this request charged (0: answered from the cache)."""
    return {
        "request-id": job.id,
        "history-item-id": job.id,
        "character-cost": "0" if job.cached else str(job.characters),
        "Cache-Control": "no-store",
    }
