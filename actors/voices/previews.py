"""A voice's preview made again, on its owner's request (``POST /v1/voices/{id}/preview``).

The preview is an ordinary job of the owner through the ``Intake``: the text checked, the
voice's default settings applied, the cache looked at (the same text and settings answer with
the audio that exists, nothing charged), the quota checked (``429 quota_exceeded`` when it does
not fit) and, once generated, charged once like any job. An idempotency key makes a repeated
request the same job. The voice then points at the job as its latest preview; its current
preview stays until the job's audio is linked: at once when the cache answered, else by
VoiceSync when the job succeeds (``actors/voices/voice_sync.py``). Policy: README "Voices".
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from actors.pipeline.intake import Intake
from protocols.domain.voices import VoiceCatalog, sample_text, voice_event
from protocols.errors import ChorusError
from protocols.events import NO_EVENTS, EventKind
from protocols.messages import Job, JobRequest, JobStatus, User, Voice
from protocols.ports import EventSink

log = logging.getLogger("chorus.voices")


def preview_key(voice_id: str, key: str | None) -> str | None:
    """The job's idempotency key: the client's, scoped to this voice's previews."""
    return None if key is None else f"voice-preview:{voice_id}:{key}"


async def remake_preview(
    *, intake: Intake, catalog: VoiceCatalog, user: User, voice_id: str, text: str | None,
    idempotency_key: str | None, track: Callable[[Voice], Awaitable[None]],
    events: EventSink = NO_EVENTS,
) -> tuple[Job, Voice]:
    """Submit the preview job of the owner's ``voice_id`` and point the voice at it; returns
    the job and the voice as they now are. Raises what the Intake raises (``VoiceNotReady`` for
    a clone not completed, ``QuotaExceeded``, ``TextTooLong``, ...), and ``Forbidden`` /
    ``UnknownVoice`` for a voice that is not the caller's."""
    voice = await catalog.owned(voice_id, user.id)
    request = JobRequest(
        text=text if text is not None else sample_text(voice.language),
        voice_id=voice.id, language=voice.language or None,
        idempotency_key=preview_key(voice.id, idempotency_key),
    )
    job, _ = await intake.submit(request, user)
    store = catalog.store
    if job.id not in (voice.preview_job_id, voice.preview_audio_job_id):
        voice = await store.set_preview_job(voice.id, job.id) or voice
    if job.status is JobStatus.succeeded and job.audio_id:  # answered from the cache
        if voice.preview_pending and voice.preview_job_id == job.id:
            voice = await store.set_voice_preview(voice.id, job.audio_id, job_id=job.id) or voice
            events.publish(voice_event(EventKind.voice_updated, voice,
                                       preview_audio_id=job.audio_id))
    elif job.status.terminal:  # an idempotent repeat of a preview job that failed
        voice = await store.drop_preview_job(voice.id, job.id) or voice
    else:
        try:
            await track(voice)
        except ChorusError as exc:  # VoiceSync finds it in Postgres on its next rescan
            log.warning("preview of voice %s not scheduled now: %s", voice.id, exc.detail)
    return job, voice
