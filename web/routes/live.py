"""``GET /v1/jobs/<id>/stream``: the caller's job's audio as it is made (another user's job is a
404), relayed from ``WebContext.follow_audio`` (``actors/pipeline/live.py``).

The answer starts once the first bytes are there, so an error before them (the job failed, its
audio is gone, the wait ran out) is a problem response with its status; after them the body is
cut short (no last chunk: the client sees a broken transfer, never a clip that looks whole).
``relay`` is what other streaming routes (the ElevenLabs- and OpenAI-compatible ones) build on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from quart import Blueprint, Response

from protocols.domain.audio import parse_format
from protocols.errors import NotFound
from web.auth import current_user
from web.inputs import stored_id

if TYPE_CHECKING:
    from protocols.messages import Job
    from web.context import WebContext

#: the response may take this much longer than the follow's own bound
RESPONSE_MARGIN_S = 30.0


def follow(ctx: WebContext, job: Job) -> AsyncIterator[bytes]:
    if ctx.follow_audio is None:
        raise NotFound("Following a job's audio is not available on this server.")
    return ctx.follow_audio(job)


async def relay(ctx: WebContext, job: Job, headers: dict[str, str] | None = None) -> Response:
    """The job's audio as a chunked response (see the module docstring)."""
    chunks = follow(ctx, job)
    try:
        first = await anext(chunks, b"")
    except BaseException:
        await chunks.aclose()  # type: ignore[attr-defined]
        raise

    async def body() -> AsyncIterator[bytes]:
        try:
            if first:
                yield first
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]

    content_type = parse_format(job.output_format).content_type
    response = Response(
        body(), 200, {"Cache-Control": "no-store", "X-Job-Id": job.id, **(headers or {})},
        content_type=content_type,
    )
    response.timeout = ctx.settings.live_wait_s + RESPONSE_MARGIN_S
    return response


def blueprint(ctx: WebContext) -> Blueprint:
    bp = Blueprint("live", __name__)

    @bp.get("/v1/jobs/<job_id>/stream")
    async def stream_job(job_id: str) -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        job = await ctx.store.get_job(stored_id(job_id, "job"), owner=user.id)
        if job is None:
            raise NotFound(f"No job {job_id!r}.")
        return await relay(ctx, job)

    return bp
