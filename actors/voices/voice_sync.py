"""VoiceSync: tracks cloned voices until the provider has them ready, then has a preview made,
and links the audio of every preview job (the first one, and those asked for again with
``POST /v1/voices/{id}/preview``) as the voice's preview.

Over a ``VoiceSyncQueue`` (Redis: voice ids by next poll time, with a status per voice that
expires after the voice's window plus a margin), rebuilt from Postgres on every start and every
``voice_rescan_s``, so neither a crash of this actor nor a process restart loses a tracked
voice; Postgres is the truth, every step idempotent.

For a voice in ``processing``: poll the provider (backoff ``voice_poll_s`` doubling up to
``voice_poll_max_s``). Ready → a preview job is created as the owner's (same store + Producer
path as ``POST /v1/jobs``, idempotent per voice), checked against the owner's quota like any
job: one that does not fit is skipped (the voice is usable without a preview; the owner may ask
for one later). The voice becomes ``completed`` pointing at the job, and it stays tracked
(state ``preview``) until the job ends: its audio is linked as the preview, unless a newer
preview was asked for meanwhile; a job that ended without audio is forgotten (the voice keeps
the preview it had). Failed at the provider, or not ready ``voice_ready_timeout_s`` (30 min)
after it was created → ``failed`` with the reason. Publishes ``voice.updated`` on each change.
Times are unix seconds from ``clock`` (tests pass one on trio's virtual clock).

Fault points: ``voice_sync.poll`` (before each poll), ``voice_sync.after_ready`` (the preview job
is submitted, the voice not yet completed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

import msgspec
import trio

from protocols.domain.voices import VoiceCatalog, preview_job, voice_event
from protocols.errors import ChorusError, ProviderError, QuotaExceeded, UnknownVoice
from protocols.events import EventKind, job_event
from protocols.faults import FaultPlan
from protocols.messages import JobStatus, SpeechJob, TrackedVoice, Voice, VoiceStatus
from protocols.ports import EventSink, JobStore, VoiceSyncQueue
from protocols.settings import Settings

log = logging.getLogger("chorus.voice_sync")

BATCH = 20
PREVIEW_POLL_S = 1.0


class VoiceSyncStatistics(msgspec.Struct, frozen=True):
    polls: int
    completed: int
    failed: int
    previews: int
    rebuilt: int  # voices (re)tracked from Postgres


class VoiceSync:
    def __init__(
        self, *, settings: Settings, catalog: VoiceCatalog, jobs: JobStore,
        open_queue: Callable[[], AbstractAsyncContextManager[VoiceSyncQueue]],
        submit: Callable[[SpeechJob], Awaitable[None]], events: EventSink,
        clock: Callable[[], float] = time.time, tick_s: float = 1.0,
    ) -> None:
        self.settings, self.catalog, self.jobs = settings, catalog, jobs
        self.voices = catalog.store
        self._open_queue, self._submit, self._events = open_queue, submit, events
        self._clock, self._tick_s = clock, tick_s
        self._faults = settings.faults or FaultPlan()
        self._polls = self._completed = self._failed = self._previews = self._rebuilt = 0

    def statistics(self) -> VoiceSyncStatistics:
        return VoiceSyncStatistics(
            self._polls, self._completed, self._failed, self._previews, self._rebuilt
        )

    async def run(self, stop: trio.Event, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with self._open_queue() as queue:
            await self._rebuild(queue)
            task_status.started()
            await self._sync_defaults()
            rescan_at = trio.current_time() + self.settings.voice_rescan_s
            while not stop.is_set():
                for tracked in await queue.due(self._clock(), BATCH):
                    if stop.is_set():
                        break
                    await self._step(queue, tracked)
                if trio.current_time() >= rescan_at:
                    await self._rebuild(queue)
                    rescan_at = trio.current_time() + self.settings.voice_rescan_s
                with trio.move_on_after(self._tick_s):
                    await stop.wait()

    async def _sync_defaults(self) -> None:
        with trio.move_on_after(self.settings.elevenlabs_timeout_s):
            try:
                await self.catalog.ensure_defaults()
            except ChorusError as exc:
                log.warning("default voices not synced: %s", exc.detail)

    async def _rebuild(self, queue: VoiceSyncQueue) -> None:
        """Track every voice Postgres says needs it (kept as it is when already tracked)."""
        now, window = self._clock(), self.settings.voice_ready_timeout_s
        for voice in await self.voices.tracked_voices(self.catalog.provider):
            if voice.status is VoiceStatus.processing:
                await queue.track(voice.id, now, voice.created_at.timestamp() + window)
            else:  # a preview to link: its own window, from now
                await queue.track(voice.id, now, now + window, state="preview")
            self._rebuilt += 1

    def _backoff(self, attempts: int) -> float:
        s = self.settings
        return min(s.voice_poll_max_s, s.voice_poll_s * 2 ** min(attempts, 16))

    async def _step(self, queue: VoiceSyncQueue, tracked: TrackedVoice) -> None:
        await self._faults.hit("voice_sync.poll")
        voice = await self.voices.get_voice(tracked.voice_id)
        if voice is None:  # deleted meanwhile
            await queue.done(tracked.voice_id)
        elif voice.status is VoiceStatus.processing:
            await self._poll(queue, tracked, voice)
        elif voice.preview_pending:
            await self._link_preview(queue, tracked, voice)
        else:
            await queue.done(tracked.voice_id)

    async def _poll(self, queue: VoiceSyncQueue, tracked: TrackedVoice, voice: Voice) -> None:
        self._polls += 1
        state, reason = "processing", None
        try:
            answer = await self.catalog.manager.voice_state(voice.provider_voice_id)
            state, reason = answer.state, answer.reason
        except UnknownVoice:
            state, reason = "failed", "the voice no longer exists at the provider"
        except ProviderError as exc:
            log.warning("polling voice %s: %s", voice.id, exc.detail)
        now = self._clock()
        if state == "ready":
            job_id = await self._submit_preview(voice)
            await self._faults.hit("voice_sync.after_ready")
            done = await self.voices.settle_voice(
                voice.id, VoiceStatus.completed, preview_job_id=job_id
            )
            self._completed += 1
            if done is not None:
                self._events.publish(voice_event(EventKind.voice_updated, done, status="completed"))
            await queue.reschedule(voice.id, now + PREVIEW_POLL_S, 0, state="preview")
        elif state == "failed" or now >= tracked.deadline:
            reason = reason or (
                f"not ready {self.settings.voice_ready_timeout_s / 60:g} minutes after cloning"
            )
            await self._fail(queue, voice, reason)
        else:
            await queue.reschedule(voice.id, now + self._backoff(tracked.attempts),
                                   tracked.attempts + 1)

    async def _fail(self, queue: VoiceSyncQueue, voice: Voice, reason: str) -> None:
        done = await self.voices.settle_voice(voice.id, VoiceStatus.failed, reason)
        self._failed += 1
        if done is not None:
            self._events.publish(
                voice_event(EventKind.voice_updated, done, status=done.status.value,
                            reason=done.status_reason)
            )
        await queue.done(voice.id)

    async def _submit_preview(self, voice: Voice) -> str | None:
        """The preview job (idempotent per voice), handed to the Producer while it is queued;
        None when there is none (the owner's quota has no room for it, or it cannot be made)."""
        try:
            new = await preview_job(voice, self.catalog.speech, self.settings)
        except ChorusError as exc:
            log.warning("no preview for voice %s: %s", voice.id, exc.detail)
            return None
        quota = (await self.jobs.usage(new.owner)).limit if new.owner else None
        try:
            job, created = await self.jobs.create_job(new, quota=quota)
        except QuotaExceeded as exc:
            log.info("no preview for voice %s: %s", voice.id, exc.detail)
            self._events.publish(voice_event(EventKind.voice_updated, voice,
                                             preview_skipped=QuotaExceeded.code))
            return None
        if job.status is JobStatus.queued:
            await self._submit(job.to_stream(time.time()))
            if created:
                self._events.publish(job_event(EventKind.job_queued, job.id, job.owner))
        return job.id

    async def _link_preview(
        self, queue: VoiceSyncQueue, tracked: TrackedVoice, voice: Voice
    ) -> None:
        job_id = voice.preview_job_id or ""
        job = await self.jobs.get_job(job_id)
        now = self._clock()
        if job is not None and job.status is JobStatus.succeeded and job.audio_id:
            done = await self.voices.set_voice_preview(voice.id, job.audio_id, job_id=job_id)
            if done is not None and done.preview_pending:  # a newer one was asked for
                await queue.reschedule(voice.id, now, 0)
                return
            self._previews += 1
            if done is not None:
                self._events.publish(voice_event(
                    EventKind.voice_updated, done, status=done.status.value,
                    preview_audio_id=job.audio_id,
                ))
            await queue.done(voice.id)
        elif job is None or job.status.terminal:
            log.warning("preview job %s of voice %s ended without audio", job_id, voice.id)
            done = await self.voices.drop_preview_job(voice.id, job_id)
            if done is not None and done.preview_pending:
                await queue.reschedule(voice.id, now, 0)
                return
            await queue.done(voice.id)
        else:
            if job.status is JobStatus.queued:  # the enqueue is idempotent by job id
                await self._submit(job.to_stream(time.time()))
            await queue.reschedule(voice.id, now + min(self._backoff(tracked.attempts), 10.0),
                                   tracked.attempts + 1)
