"""A job's timings: ``GET /v1/jobs/<id>/alignment`` (JSON: characters and words with their start
and end seconds, ElevenLabs' ``/with-timestamps`` shape plus the words) and its captions,
``GET /v1/jobs/<id>/captions.vtt`` and ``.srt`` (the words grouped into cues,
``protocols/domain/captions.py``).

The caller's own jobs only (404 otherwise). A job without audio is a 409: ``not_ready`` while
it is queued or running, ``no_audio`` once it ended without any. A clip stored before Chorus
kept timings (none stored with it) gets an estimate, the words spread over the clip by length,
marked ``"source": "estimated"`` (``"engine"``: the provider's own timings).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
from quart import Blueprint, Response

from protocols.domain.captions import (
    SRT_CONTENT_TYPE,
    VTT_CONTENT_TYPE,
    cues_srt,
    cues_vtt,
    word_cues,
)
from protocols.domain.ssml import InvalidMarkup, spoken_text
from protocols.domain.text import normalize_text
from protocols.domain.timing import alignment, even_words
from protocols.errors import NotFound, NotReady
from protocols.messages import Alignment, Job, JobStatus
from web.auth import current_user
from web.inputs import stored_id
from web.problems import json_response

if TYPE_CHECKING:
    from web.context import WebContext


class NoAudio(NotReady):
    """The job ended without audio (failed, dead-lettered or cancelled): it has no timings."""

    code = "no_audio"
    title = "The job has no audio"


def estimate(job: Job, duration_s: float) -> Alignment:
    """Timings for a clip stored without any: its words spread over it by their length."""
    try:
        text = spoken_text(normalize_text(job.text))
    except InvalidMarkup:
        text = normalize_text(job.text)
    return alignment(text, even_words(text, duration_s), duration_s)


def blueprint(ctx: WebContext) -> Blueprint:
    bp = Blueprint("timings", __name__)

    async def timings(job_id: str) -> tuple[Job, str, float, Alignment, str]:
        """(job, audio id, clip seconds, alignment, source) of the caller's job."""
        user = await current_user(ctx.store, ctx.known_keys)
        job = await ctx.store.get_job(stored_id(job_id, "job"), owner=user.id)
        if job is None:
            raise NotFound(f"No job {job_id!r}.")
        if job.status is not JobStatus.succeeded or job.audio_id is None:
            if job.status.terminal:
                raise NoAudio(f"Job {job.id} is {job.status}: it has no audio, so no timings.",
                              status=job.status.value)
            raise NotReady(f"Job {job.id} is {job.status}: its timings come with its audio.",
                           status=job.status.value)
        audio = await ctx.store.get_audio(job.audio_id, owner=user.id)
        if audio is None:
            raise NotFound(f"No audio for job {job_id!r}.")
        found = await ctx.alignment_of(audio)
        if found is not None:
            return job, audio.id, audio.duration_s, found, "engine"
        return job, audio.id, audio.duration_s, estimate(job, audio.duration_s), "estimated"

    @bp.get("/v1/jobs/<job_id>/alignment")
    async def get_alignment(job_id: str) -> Response:
        job, audio_id, duration, found, source = await timings(job_id)
        body = {
            "job_id": job.id, "audio_id": audio_id, "duration_s": duration, "source": source,
            **msgspec.to_builtins(found),
        }
        return json_response(body, 200, {"Cache-Control": "private, max-age=3600"})

    @bp.get("/v1/jobs/<job_id>/captions.vtt")
    async def get_vtt(job_id: str) -> Response:
        _, _, _, found, _ = await timings(job_id)
        return Response(cues_vtt(word_cues(found.words)), 200, content_type=VTT_CONTENT_TYPE)

    @bp.get("/v1/jobs/<job_id>/captions.srt")
    async def get_srt(job_id: str) -> Response:
        _, _, _, found, _ = await timings(job_id)
        return Response(cues_srt(word_cues(found.words)), 200, content_type=SRT_CONTENT_TYPE)

    return bp
