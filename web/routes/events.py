"""Server-sent events: ``GET /v1/events`` (the caller's events), ``GET /v1/jobs/<id>/events``
(one job's, ending after its terminal event) and ``GET /v1/storybooks/<id>/events`` (one book's,
ending after ``storybook.succeeded | partial | failed | cancelled``).

Frames: ``id:`` = the stream entry id, ``event:`` = the kind, ``data:`` = JSON
``{id, kind, subject, at, data}``; a ``retry:`` hint first, a comment line on an idle stream every
``sse_heartbeat_s``. ``Last-Event-ID`` (header, or ``?last_event_id=``) resumes after that id;
without it a stream starts at the present. ``?kinds=job.succeeded,job.failed`` filters.

Each stream reads the owner's own stream (``{prefix}:events:{owner}``) with a blocking XREAD on
the SSE pool (``WebContext.event_log``), one connection per open stream; at most
``sse_max_streams`` are open per process (more answer 503 with Retry-After). A stream ends within
one read block once the server stops, or when Redis fails (the client resumes with its id).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TYPE_CHECKING

import msgspec
import trio
from quart import Blueprint, Response, request

from protocols.errors import ChorusError, InvalidInput, NotFound, QueueUnavailable
from protocols.events import Event, EventKind, job_state_event, valid_event_id
from protocols.messages import Job
from protocols.ports import EventLog
from web.auth import current_user
from web.inputs import stored_id
from web.problems import InvalidLastEventId, TooManyStreams
from web.routes.storybooks import BOOK_ENDS, book_state_event, recheck_book

if TYPE_CHECKING:
    from web.context import WebContext

log = logging.getLogger("chorus.web.events")

RETRY_MS = 2000
MAX_BLOCK_MS = 1000
READ_COUNT = 100
HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def frame(event: Event) -> bytes:
    lines = [f"id: {event.id}"] if event.id else []
    lines.append(f"event: {event.kind.value}")
    lines.append("data: " + msgspec.json.encode(event.view()).decode())
    return ("\n".join(lines) + "\n\n").encode()


def parse_kinds(raw: str | None) -> frozenset[EventKind] | None:
    names = [n.strip() for n in (raw or "").split(",") if n.strip()]
    if not names:
        return None
    known = {k.value for k in EventKind}
    unknown = sorted(n for n in names if n not in known)
    if unknown:
        raise InvalidInput(
            f"Unknown event kind(s): {', '.join(u[:64] for u in unknown)}.", kinds=sorted(known)
        )
    return frozenset(EventKind(n) for n in names)


def last_event_id() -> str | None:
    value = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    if value is None or not value.strip():
        return None
    value = value.strip()
    if not valid_event_id(value):
        raise InvalidLastEventId("Last-Event-ID must be an event id such as 1700000000000-0.")
    return value


class _Body:
    """An SSE response body: an async iterator over the frames that gives its stream slot back
    when closed (Quart closes the body whether or not it was ever iterated)."""

    def __init__(self, frames: AsyncGenerator[bytes, None], release: Callable[[], None]) -> None:
        self._frames = frames
        self._release = release

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        return await self._frames.__anext__()

    async def aclose(self) -> None:
        self._release()
        await self._frames.aclose()


def blueprint(ctx: WebContext) -> Blueprint:
    bp = Blueprint("events", __name__)
    settings = ctx.settings
    stopping = ctx.stopping if ctx.stopping is not None else trio.Event()
    block_ms = min(settings.read_block_ms, MAX_BLOCK_MS)
    read_limit = block_ms / 1000 + settings.redis_timeout_s
    slots = {"open": 0}

    def take_slot() -> Callable[[], None]:
        if slots["open"] >= settings.sse_max_streams:
            raise TooManyStreams(f"{slots['open']} event streams are open.")
        slots["open"] += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                slots["open"] -= 1

        return release

    def event_log() -> EventLog:
        if ctx.event_log is None:
            raise QueueUnavailable("Event streams are not available in this process.")
        return ctx.event_log

    async def frames(
        source: EventLog,
        stream: str,
        after: str,
        *,
        first: list[Event],
        kinds: frozenset[EventKind] | None = None,
        subject: str | None = None,
        ends: Callable[[Event], bool] = lambda event: event.kind.ends_job,
        recheck: Callable[[], Awaitable[Event | None]] | None = None,
    ) -> AsyncGenerator[bytes, None]:
        """``subject``: follow one job or book, ending after the event ``ends`` says is its
        last; ``recheck``: its final state if it has ended (an event lost at the source never
        strands a client), else None."""
        yield f"retry: {RETRY_MS}\n\n".encode()
        for event in first:
            yield frame(event)
            if subject is not None and ends(event):
                return
        quiet_since = trio.current_time()
        while not stopping.is_set():
            batch: list[Event] | None = None
            with trio.move_on_after(read_limit):
                try:
                    batch = await source.read(stream, after, count=READ_COUNT, block_ms=block_ms)
                except ChorusError as exc:
                    log.info("event stream ended: %s", exc)
                    return  # the client resumes with its Last-Event-ID
            if batch is None:
                return
            for event in batch:
                after = event.id
                if subject is not None and event.subject != subject:
                    continue
                if kinds is not None and event.kind not in kinds:
                    continue
                yield frame(event)
                quiet_since = trio.current_time()
                if subject is not None and ends(event):
                    return
            if trio.current_time() - quiet_since >= settings.sse_heartbeat_s:
                if recheck is not None and (last := await recheck()) is not None:
                    yield frame(last)
                    return
                yield b": keep-alive\n\n"
                quiet_since = trio.current_time()

    def respond(body: AsyncGenerator[bytes, None], release: Callable[[], None]) -> Response:
        response = Response(
            _Body(body, release), status=200, headers=HEADERS, content_type="text/event-stream"
        )
        response.timeout = None  # endless by design (Quart would cut it after RESPONSE_TIMEOUT)
        return response

    @bp.get("/v1/events")
    async def user_events() -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        kinds = parse_kinds(request.args.get("kinds"))
        after = last_event_id()
        source = event_log()
        stream = source.owner_stream(user.id)
        release = take_slot()
        try:
            start = after or await source.tail(stream)
            body = frames(source, stream, start, first=[], kinds=kinds)
        except BaseException:
            release()
            raise
        return respond(body, release)

    @bp.get("/v1/jobs/<job_id>/events")
    async def job_events(job_id: str) -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        stored_id(job_id, "job")
        after = last_event_id()
        source = event_log()
        stream = source.owner_stream(user.id)
        release = take_slot()
        try:
            start = after or await source.tail(stream)  # before the state: nothing falls between
            job = await ctx.store.get_job(job_id, owner=user.id)
            if job is None:
                raise NotFound(f"No job {job_id!r}.")
            first = [job_state_event(job)] if after is None or job.status.terminal else []

            async def recheck() -> Event | None:
                now: Job | None = job  # unknown: keep streaming
                with trio.move_on_after(settings.db_timeout_s):
                    try:
                        now = await ctx.store.get_job(job_id, owner=user.id)
                    except ChorusError:
                        pass
                if now is None:
                    return job_state_event(job)  # gone: end with what was last known
                return job_state_event(now) if now.status.terminal else None

            body = frames(source, stream, start, first=first, subject=job_id, recheck=recheck)
        except BaseException:
            release()
            raise
        return respond(body, release)

    @bp.get("/v1/storybooks/<book_id>/events")
    async def book_events(book_id: str) -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        stored_id(book_id, "storybook")
        after = last_event_id()
        source = event_log()
        stream = source.owner_stream(user.id)
        if ctx.books is None:
            raise QueueUnavailable("Storybooks are not available in this process.")
        release = take_slot()
        try:
            start = after or await source.tail(stream)  # before the state: nothing falls between
            book = await ctx.books.get_storybook(book_id, owner=user.id)
            if book is None:
                raise NotFound(f"No storybook {book_id!r}.")
            state = await book_state_event(ctx, book)
            first = [state] if after is None or book.status.terminal else []

            async def recheck() -> Event | None:
                now = await recheck_book(ctx, book_id, user.id)
                return await book_state_event(ctx, now) if now and now.status.terminal else None

            body = frames(
                source, stream, start, first=first, subject=book_id,
                ends=lambda event: event.kind in BOOK_ENDS, recheck=recheck,
            )
        except BaseException:
            release()
            raise
        return respond(body, release)

    return bp
