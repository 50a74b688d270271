"""Storybooks over HTTP (``/v1/storybooks``): submit, look, list, retry, cancel, the outputs and
one book's events.

The routes only speak HTTP: bodies become ``StorybookRequest`` / ``RetryRequest`` and go to the
``StorybookIntake`` or the store; the StorybookRunner does the work and is woken (``kick``)
after every change made here. Another user's book is a 404 on every route. Outputs (audio,
captions, chapters) exist once every line has ended (``409 not_ready`` before), skip the lines
that failed and say so in ``X-Chorus-Skipped-Lines``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import msgspec
import trio
from quart import Blueprint, Response, request

from protocols.domain.storybooks import PERMANENT_ERRORS
from protocols.errors import (
    ChorusError,
    InvalidInput,
    NotFound,
    NotReady,
    QueueUnavailable,
)
from protocols.events import Event, EventKind
from protocols.storybooks import RetryRequest, Storybook, StorybookRequest
from web.auth import current_user
from web.inputs import decode_as, decode_cursor, encode_cursor, json_object, stored_id
from web.problems import UnsupportedMediaType, json_response
from web.routes.audio import single_range
from web.routes.jobs import idempotency_key
from web.views import storybook_summary, storybook_view

if TYPE_CHECKING:
    from web.context import WebContext

PAGE = 50
BOOK_ENDS = frozenset({
    EventKind.storybook_succeeded, EventKind.storybook_partial, EventKind.storybook_failed,
    EventKind.storybook_cancelled,
})


def parse(body: bytes, kind: type[Any]) -> Any:
    mimetype = request.mimetype
    if mimetype and mimetype != "application/json" and not mimetype.endswith("+json"):
        raise UnsupportedMediaType(f"Content-Type must be application/json, not {mimetype}.")
    return decode_as(json_object(body) if body.strip() else {}, kind)


def blueprint(ctx: WebContext) -> Blueprint:
    bp = Blueprint("storybooks", __name__)

    def books():  # type: ignore[no-untyped-def]
        if ctx.books is None or ctx.storybooks is None:
            raise QueueUnavailable("Storybooks are not available in this process.")
        return ctx.books

    async def own_book(book_id: str, owner: str) -> Storybook:
        book = await books().get_storybook(stored_id(book_id, "storybook"), owner=owner)
        if book is None:
            raise NotFound(f"No storybook {book_id!r}.")
        return book

    @bp.post("/v1/storybooks")
    async def submit() -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        books()
        req = parse(await request.get_data(cache=False), StorybookRequest)
        key = idempotency_key(req.idempotency_key)
        if key != req.idempotency_key:
            req = msgspec.structs.replace(req, idempotency_key=key)
        assert ctx.storybooks is not None
        book, created = await ctx.storybooks.submit(req, user)
        return json_response(
            storybook_summary(book), 202 if created else 200,
            {"Location": f"/v1/storybooks/{book.id}"},
        )

    @bp.get("/v1/storybooks")
    async def list_books() -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        try:
            limit = int(request.args.get("limit", PAGE))
        except ValueError:
            raise InvalidInput(f"limit must be a number from 1 to {PAGE}.", field="limit") from None
        if not 1 <= limit <= PAGE:
            raise InvalidInput(f"limit must be a number from 1 to {PAGE}.", field="limit")
        found = await books().list_storybooks(
            user.id, before=decode_cursor(request.args.get("cursor")), limit=limit + 1
        )
        more = len(found) > limit
        found = found[:limit]
        return json_response({
            "storybooks": [storybook_summary(b) for b in found],
            "next_cursor": encode_cursor(found[-1].id) if more else None,
        }, 200, {"Cache-Control": "no-store"})

    @bp.get("/v1/storybooks/<book_id>")
    async def get_book(book_id: str) -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        book = await own_book(book_id, user.id)
        lines = await books().storybook_lines(book.id)
        rounds = await books().retry_rounds(book.id)
        return json_response(storybook_view(book, lines, rounds), 200,
                             {"Cache-Control": "no-store"})

    @bp.post("/v1/storybooks/<book_id>/retry")
    async def retry(book_id: str) -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        book = await own_book(book_id, user.id)
        req = parse(await request.get_data(cache=False), RetryRequest)
        started = await books().start_round(
            book.id, user.id, line_ids=req.lines, force=req.force, permanent=PERMANENT_ERRORS,
            quota=user.monthly_quota,
        )
        ctx.kick_runner()
        ctx.events.publish(Event(
            kind=EventKind.storybook_retry_started, owner=user.id, subject=book.id,
            at=time.time(), data={"round": started.number, "lines": list(started.line_ids),
                                  "forced": started.forced},
        ))
        return json_response({
            "storybook_id": book.id, "round": started.number, "scope": started.scope,
            "forced": started.forced, "lines": list(started.line_ids),
        }, 202, {"Location": f"/v1/storybooks/{book.id}"})

    @bp.delete("/v1/storybooks/<book_id>")
    async def cancel(book_id: str) -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        await own_book(book_id, user.id)
        assert ctx.storybooks is not None
        book = await ctx.storybooks.cancel(book_id, user.id)
        if book is None:
            raise NotFound(f"No storybook {book_id!r}.")
        return json_response(storybook_summary(book), 202)

    # -- outputs -----------------------------------------------------------------------------

    async def finished_book(book_id: str) -> Storybook:
        user = await current_user(ctx.store, ctx.known_keys)
        book = await own_book(book_id, user.id)
        if not book.status.terminal:
            raise NotReady(
                f"Storybook {book.id} is {book.status.value}; its outputs exist once every"
                " line has ended.", status_now=book.status.value,
            )
        if ctx.book_outputs is None:
            raise QueueUnavailable("Storybook outputs are not available in this process.")
        return book

    def skipped_header(skipped: list[str]) -> dict[str, str]:
        return {"X-Chorus-Skipped-Lines": ",".join(skipped)} if skipped else {}

    async def audio_response(data: bytes, content_type: str, name: str,
                             headers: dict[str, str]) -> Response:
        headers = {**headers, "Content-Disposition": f'inline; filename="{name}"',
                   "Cache-Control": "private, no-cache", "Accept-Ranges": "bytes"}
        response = Response(data, 200, headers, content_type=content_type)
        if not single_range():
            return response
        return await response.make_conditional(
            request, accept_ranges=True, complete_length=len(data)
        )

    @bp.get("/v1/storybooks/<book_id>/audio")
    async def book_audio(book_id: str) -> Response:
        book = await finished_book(book_id)
        assert ctx.book_outputs is not None
        out = await ctx.book_outputs.audio(book)
        return await audio_response(
            out.data, out.content_type, f"{book.id}.{out.extension}",
            skipped_header(out.skipped),
        )

    @bp.get("/v1/storybooks/<book_id>/pages/<int:page>/audio")
    async def page_audio(book_id: str, page: int) -> Response:
        book = await finished_book(book_id)
        if not 0 <= page < len(book.page_titles):
            raise NotFound(f"Storybook {book.id} has pages 0 to {len(book.page_titles) - 1}.")
        assert ctx.book_outputs is not None
        out = await ctx.book_outputs.audio(book, page=page)
        return await audio_response(
            out.data, out.content_type, f"{book.id}-page{page}.{out.extension}",
            skipped_header(out.skipped),
        )

    @bp.get("/v1/storybooks/<book_id>/captions.<kind>")
    async def captions(book_id: str, kind: str) -> Response:
        if kind not in ("vtt", "srt"):
            raise NotFound("Captions are captions.vtt or captions.srt.")
        book = await finished_book(book_id)
        assert ctx.book_outputs is not None
        text, skipped = await ctx.book_outputs.captions(book, kind)
        content_type = "text/vtt; charset=utf-8" if kind == "vtt" else "application/x-subrip"
        return Response(text, 200, {**skipped_header(skipped), "Cache-Control": "no-cache"},
                        content_type=content_type)

    @bp.get("/v1/storybooks/<book_id>/chapters")
    async def chapters(book_id: str) -> Response:
        book = await finished_book(book_id)
        assert ctx.book_outputs is not None
        body = await ctx.book_outputs.chapters(book)
        return json_response(body, 200, {"Cache-Control": "no-cache"})

    return bp


async def book_state_event(ctx: WebContext, book: Storybook) -> Event:
    """The book's state now, as the first frame of its event stream."""
    counts = await ctx.books.line_counts(book.id) if ctx.books is not None else {}
    kind = {
        "succeeded": EventKind.storybook_succeeded, "partial": EventKind.storybook_partial,
        "failed": EventKind.storybook_failed, "cancelled": EventKind.storybook_cancelled,
    }.get(book.status.value, EventKind.storybook_progress)
    return Event(kind=kind, owner=book.owner, subject=book.id, at=time.time(), data={
        "status": book.status.value, "lines_total": book.lines_total,
        "counts": {str(k): v for k, v in counts.items()}, "round": book.round,
    })


async def recheck_book(ctx: WebContext, book_id: str, owner: str) -> Storybook | None:
    with trio.move_on_after(ctx.settings.db_timeout_s):
        try:
            return await ctx.books.get_storybook(book_id, owner=owner) if ctx.books else None
        except ChorusError:
            pass
    return None
