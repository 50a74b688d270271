"""``GET /v1/jobs`` (the caller's jobs, newest first, a page at a time) and
``DELETE /v1/jobs/<id>`` (withdraw a queued job: ``actors/pipeline/cancel.py``).

Query parameters of the list: ``status`` (one job status), ``created_after`` (an ISO 8601
time; without a zone, UTC), ``cursor`` (``next_cursor`` of the previous page, opaque: the last
job's creation time and id, a keyset over ``(created_at, id)``), ``limit`` (1 to 100, default
50). Anything else, or a value that does not parse, is a typed 422 (400 for a cursor).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from quart import Blueprint, Response, request

from actors.pipeline.cancel import cancel_job
from protocols.errors import InvalidCursor, InvalidInput
from protocols.messages import JobStatus
from web.auth import current_user
from web.inputs import decode_cursor, encode_cursor, stored_id
from web.problems import json_response
from web.views import job_view

if TYPE_CHECKING:
    from web.context import WebContext

PAGE = 50
MAX_PAGE = 100
PARAMETERS = frozenset({"status", "created_after", "cursor", "limit"})


class UnknownParameter(InvalidInput):
    code = "unknown_parameter"
    title = "Unknown query parameter"


def parse_time(value: str, field: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"{field} must be an ISO 8601 time, e.g. 2026-01-31T12:00:00Z.", field=field
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def list_query() -> tuple[JobStatus | None, dt.datetime | None,
                          tuple[dt.datetime, str] | None, int]:
    """(status, created_after, before, limit) from the query string, checked."""
    args = request.args
    unknown = sorted(set(args) - PARAMETERS)
    if unknown:
        names = ", ".join(repr(name[:64]) for name in unknown)
        raise UnknownParameter(
            f"Unknown query parameter(s): {names}. Allowed: {', '.join(sorted(PARAMETERS))}.",
            parameters=[name[:64] for name in unknown],
        )
    repeated = sorted(name for name in PARAMETERS if len(args.getlist(name)) > 1)
    if repeated:
        raise InvalidInput(f"Give {repeated[0]} once.", field=repeated[0])
    status = None
    if "status" in args:
        try:
            status = JobStatus(args["status"])
        except ValueError:
            allowed = ", ".join(s.value for s in JobStatus)
            raise InvalidInput(f"status must be one of: {allowed}.", field="status") from None
    created_after = parse_time(args["created_after"], "created_after") \
        if "created_after" in args else None
    try:
        limit = int(args.get("limit", PAGE))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be a number from 1 to {MAX_PAGE}.", field="limit")
    before = None
    cursor = decode_cursor(args.get("cursor"))
    if cursor is not None:
        at, sep, job_id = cursor.partition("|")
        try:
            if not sep or not job_id:
                raise ValueError(cursor)
            before = (dt.datetime.fromisoformat(at), job_id)
        except ValueError as exc:
            raise InvalidCursor("cursor is not one this API returned.") from exc
    return status, created_after, before, limit


def blueprint(ctx: WebContext) -> Blueprint:
    bp = Blueprint("job_control", __name__)

    @bp.get("/v1/jobs")
    async def list_jobs() -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        status, created_after, before, limit = list_query()
        found = await ctx.store.list_jobs(
            user.id, status=status, created_after=created_after, before=before,
            limit=limit + 1,
        )
        more = len(found) > limit
        found = found[:limit]
        last = found[-1] if found else None
        next_cursor = None
        if more and last is not None:
            next_cursor = encode_cursor(f"{last.created_at.isoformat()}|{last.id}")
        jobs = [job_view(job, ctx.audio_signer) for job in found]
        return json_response(
            {"jobs": jobs, "next_cursor": next_cursor}, 200, {"Cache-Control": "no-store"}
        )

    @bp.delete("/v1/jobs/<job_id>")
    async def delete_job(job_id: str) -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        job = await cancel_job(
            ctx.store, ctx.events, ctx.mark_job_cancelled, stored_id(job_id, "job"), user.id
        )
        return json_response(job_view(job, ctx.audio_signer), 200, {"Cache-Control": "no-store"})

    return bp
