"""Admin routes for the queue (the console's admin page; ``admin`` users only, 403 for others):

- ``GET /v1/admin/overview``: stream length and pending entries per lane, the consumers, dead
  letters (count and the oldest few), provider slots in use, jobs by status and the cache hit
  rate over the last day, every process of the deployment with its supervisors' restarts (the
  shared process list) and this process's tree in detail (``actors/ops/overview.py``).
- ``POST /v1/admin/dead-letters/<id>/redrive``: put one dead-lettered job back on its lane (by
  dead-letter id or job id), the code path of ``run.py dead-letters redrive``. 404 if none.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import trio
from quart import Blueprint, Response

from protocols.errors import Forbidden, InvalidInput, NotFound, QueueUnavailable
from protocols.messages import User
from web.auth import current_user
from web.problems import json_response

if TYPE_CHECKING:
    from web.context import WebContext

#: a dead-letter id (``<ms>-<seq>``) or a job id
_LETTER_ID = re.compile(r"[A-Za-z0-9_:.-]{1,128}")


def blueprint(ctx: WebContext) -> Blueprint:
    bp = Blueprint("admin_queue", __name__)
    s = ctx.settings
    limit_s = 3 * s.redis_timeout_s + s.db_timeout_s

    async def admin() -> User:
        user = await current_user(ctx.store, ctx.known_keys)
        if user.role != "admin":
            raise Forbidden("This needs an admin's API key.")
        return user

    @bp.get("/v1/admin/overview")
    async def overview() -> Response:
        await admin()
        if ctx.overview is None:
            raise QueueUnavailable("The overview is not available in this process.")
        with trio.move_on_after(limit_s):
            return json_response(await ctx.overview(), 200, {"Cache-Control": "no-store"})
        raise QueueUnavailable("The figures took too long to gather.")

    @bp.post("/v1/admin/dead-letters/<letter_id>/redrive")
    async def redrive(letter_id: str) -> Response:
        await admin()
        if not _LETTER_ID.fullmatch(letter_id):
            raise InvalidInput("Not a dead-letter id or job id.", field="id")
        if ctx.redrive is None:
            raise QueueUnavailable("Redrive is not available in this process.")
        job_ids: list[str] | None = None
        with trio.move_on_after(limit_s):
            job_ids = await ctx.redrive(letter_id)
        if job_ids is None:  # outcome unknown: a redrive may be asked again
            raise QueueUnavailable("The redrive took too long; ask again.")
        if not job_ids:
            raise NotFound(f"No dead letter {letter_id!r}.")
        return json_response({"redriven": job_ids}, 200)

    return bp
