"""``GET /v1/usage``: the caller's character quota for this month (UTC)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Blueprint, Response

from web.auth import current_user
from web.problems import json_response

if TYPE_CHECKING:
    from web.context import WebContext


def blueprint(ctx: WebContext) -> Blueprint:
    bp = Blueprint("usage", __name__)

    @bp.get("/v1/usage")
    async def get_usage() -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        usage = await ctx.store.usage(user.id)
        body = {
            "period_start": usage.period_start,
            "resets_at": usage.resets_at,
            "limit": usage.limit,
            "used": usage.used,
            "reserved": usage.reserved,
            "remaining": usage.remaining,
            "jobs_charged": usage.jobs_charged,
        }
        return json_response(body, 200, {"Cache-Control": "no-store"})

    return bp
