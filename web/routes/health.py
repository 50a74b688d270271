"""``GET /healthz`` (liveness: 200 while serving) and ``GET /readyz`` (every dependency up).

No authentication: these are for load balancers and orchestrators, and reveal only booleans.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio
from quart import Blueprint, Response

from web.problems import NotReady, json_response

if TYPE_CHECKING:
    from web.context import WebContext

log = logging.getLogger("chorus.web")


def blueprint(ctx: WebContext) -> Blueprint:
    bp = Blueprint("health", __name__)
    limit = max(ctx.settings.redis_timeout_s, ctx.settings.db_timeout_s) + 1.0

    @bp.get("/healthz")
    async def healthz() -> Response:
        return json_response({"status": "ok"}, headers={"Cache-Control": "no-store"})

    @bp.get("/readyz")
    async def readyz() -> Response:
        checks: dict[str, bool] = {}
        with trio.move_on_after(limit) as scope:
            try:
                checks = dict(await ctx.readiness())
            except Exception:
                log.exception("readiness check failed")
                raise NotReady("The readiness check failed.", checks=checks) from None
        if scope.cancelled_caught:
            raise NotReady("The readiness check timed out.", checks=checks)
        if not checks or not all(checks.values()):
            raise NotReady("A dependency is not ready.", checks=checks)
        return json_response(
            {"status": "ready", "checks": checks}, headers={"Cache-Control": "no-store"}
        )

    return bp
