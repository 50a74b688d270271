"""``GET|HEAD /v1/audio/<id>``: the caller's own audio bytes (another user's audio is a 404),
or, with ``expires`` and ``sig`` (a signed URL from a job's ``audio_url``), without an API key.

The ETag is the audio's cache key (content-addressed, so it never changes), which makes
``If-None-Match`` answer 304 and ``Range`` requests work (one range; see ``single_range``).
A whole clip from a store that can stream (``open_stream``: the S3 store) is sent chunk by chunk
as it arrives, never held whole in memory.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from quart import Blueprint, Response, request

from protocols.errors import NotFound
from web.auth import current_user
from web.inputs import stored_id
from web.problems import AudioMissing
from web.signing import BadSignature, signed_request

if TYPE_CHECKING:
    from protocols.messages import Audio
    from web.context import WebContext

log = logging.getLogger("chorus.web")


def file_extension(output_format: str) -> str:
    """``mp3_44100_128`` -> ``mp3``."""
    return output_format.split("_", 1)[0] or "bin"


def single_range() -> bool:
    """Whether to honour the request's ``Range``: only one byte range is served (206, or 416
    when it lies beyond the end). Several ranges, another unit or a header that does not parse
    are ignored and the whole body is answered (200), as RFC 9110 §14.2 allows."""
    if "Range" not in request.headers:
        return False
    wanted = request.range
    return wanted is not None and wanted.units == "bytes" and len(wanted.ranges) == 1


async def streamed(
    audio: Audio, headers: dict[str, str],
    open_stream: Callable[[str], Awaitable[tuple[int, AsyncIterator[bytes]]]],
) -> Response:
    """The whole clip as the store hands it over; a matching ``If-None-Match`` is answered 304
    without reading it. A missing blob is ``AudioMissing`` before any byte is sent."""
    if request.if_none_match.contains_weak(audio.cache_key):  # 304, as make_conditional says
        unread = Response(b"", 200, headers, content_type=audio.content_type)
        return await unread.make_conditional(request)
    try:
        size, chunks = await open_stream(audio.path)
    except FileNotFoundError as exc:
        raise AudioMissing(f"audio {audio.id} has no file at {audio.path}") from exc

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]

    response = Response(body(), 200, headers, content_type=audio.content_type)
    response.headers["Content-Length"] = str(size)
    response.headers["Accept-Ranges"] = "bytes"
    return response


def blueprint(ctx: WebContext) -> Blueprint:
    bp = Blueprint("audio", __name__)

    @bp.route("/v1/audio/<audio_id>", methods=["GET", "HEAD"])
    async def get_audio(audio_id: str) -> Response:
        signed = signed_request(request.args)
        if signed is not None:  # a signed URL: no API key needed (web/signing.py)
            if ctx.audio_signer is None:
                raise BadSignature("This server does not sign audio URLs.")
            audio = await ctx.store.get_audio(stored_id(audio_id, "audio"))
            ctx.audio_signer.check(audio_id, None if audio is None else audio.owner, *signed)
        else:
            user = await current_user(ctx.store, ctx.known_keys)
            audio = await ctx.store.get_audio(stored_id(audio_id, "audio"), owner=user.id)
        if audio is None:
            raise NotFound(f"No audio {audio_id!r}.")
        headers = {
            "ETag": f'"{audio.cache_key}"',
            "Cache-Control": "private, max-age=31536000, immutable",
            "Content-Disposition": f'inline; filename="{audio.id}.{file_extension(audio.format)}"',
        }
        if request.method == "HEAD":
            if not await ctx.blobs.exists(audio.path):
                raise AudioMissing(f"audio {audio.id} has no file at {audio.path}")
            response = Response(b"", 200, headers, content_type=audio.content_type)
            response = await response.make_conditional(request)
            if response.status_code == 200:
                response.headers["Content-Length"] = str(audio.size)
                response.headers["Accept-Ranges"] = "bytes"
            return response
        open_stream = getattr(ctx.blobs, "open_stream", None)
        if open_stream is not None and not single_range():
            return await streamed(audio, headers, open_stream)
        try:
            data = await ctx.blobs.get(audio.path)
        except FileNotFoundError as exc:
            raise AudioMissing(f"audio {audio.id} has no file at {audio.path}") from exc
        response = Response(data, 200, headers, content_type=audio.content_type)
        response.headers["Accept-Ranges"] = "bytes"
        if not single_range():  # no length given: Quart leaves Range alone
            return await response.make_conditional(request)
        return await response.make_conditional(
            request, accept_ranges=True, complete_length=len(data)
        )

    return bp
