"""``GET /metrics``: Prometheus' text format (``protocols/metrics/exposition.py``).

Who may read it (``CHORUS_METRICS``): ``loopback`` (default): an admin's key from anywhere,
or a request without a key from 127.0.0.1 / ::1 that no proxy forwarded (no ``Forwarded`` or
``X-Forwarded-For`` header); ``admin``: an admin's key only; ``off``: 404. A key that is not an
admin's is 403; no key where one is needed, 401.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

import trio
from quart import Blueprint, Response, request

from protocols.errors import ChorusError, Forbidden, NotFound, Unauthorized
from protocols.metrics.exposition import CONTENT_TYPE, QueueFigures, render
from web.auth import current_user, presented_key

if TYPE_CHECKING:
    from web.context import WebContext


def from_loopback() -> bool:
    if request.headers.get("Forwarded") or request.headers.get("X-Forwarded-For"):
        return False
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


def blueprint(ctx: WebContext) -> Blueprint:
    bp = Blueprint("metrics", __name__)

    async def allowed() -> None:
        mode = ctx.settings.metrics
        if mode == "off":
            raise NotFound("Metrics are off (CHORUS_METRICS=off).")
        if presented_key() is None:
            if mode == "loopback" and from_loopback():
                return
            raise Unauthorized("Metrics need an admin's API key"
                               + (" or a request from loopback." if mode == "loopback" else "."))
        user = await current_user(ctx.store, ctx.known_keys)
        if user.role != "admin":
            raise Forbidden("Only admins may read the metrics.")

    @bp.get("/metrics")
    async def metrics() -> Response:
        await allowed()
        figures: QueueFigures | None = None
        if ctx.queue_figures is not None:
            with trio.move_on_after(ctx.settings.redis_timeout_s):
                try:
                    figures = await ctx.queue_figures()
                except ChorusError:
                    figures = None  # chorus_redis_up 0
        body = render(figures)
        return Response(body, 200, {"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})

    return bp
