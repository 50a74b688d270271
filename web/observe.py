"""Request ids, the access log and the HTTP metrics, as one ASGI wrapper around the app.

For each HTTP request: the caller's ``X-Request-ID`` is kept when valid (1-128 characters of
letters, digits and ``-_.:/+=@``), else a new one is made; it is bound for the request
(``protocols.tracing``: log lines, the jobs it creates, their events) and sent back on every
response, errors included. When the response ends, one access-log line (logger
``chorus.access``: method, path without the query string, status, duration, client, request id;
never a header, so never an API key or a signed URL's ``sig``) and the request counted by route
(the URL rule, e.g. ``/v1/jobs/<job_id>``; ``scope["chorus.route"]``, set by ``mark_route``;
``<unmatched>`` for a path no route has), method and status.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from quart import request

from protocols import tracing
from protocols.metrics import instruments as metrics

log = logging.getLogger("chorus.access")

HEADER = b"x-request-id"
ROUTE_KEY = "chorus.route"
UNMATCHED = "<unmatched>"


class Observe:
    """The ASGI wrapper (``web.app.create_app`` puts it outermost)."""

    def __init__(self, app: Any, *, access_log: bool = True) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _from_headers(scope["headers"]) or tracing.new_id()
        header = (HEADER, rid.encode())
        status = 500  # no response started: the server answers 500
        started = time.perf_counter()

        async def send_with_id(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        token = tracing.current.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            tracing.current.reset(token)
            elapsed = time.perf_counter() - started
            method = scope["method"]
            metrics.http_request(scope.get(ROUTE_KEY, UNMATCHED), method, status, elapsed)
            if self.access_log and log.isEnabledFor(logging.INFO):
                _access_line(scope, method, status, elapsed, rid)


def _access_line(scope: Any, method: str, status: int, elapsed: float, rid: str) -> None:
    """One access-log line, made without ``Logger.info``'s look-up of the calling frame (a
    third of its cost; the line's origin is always this function)."""
    path = scope.get("path", "")
    client = (scope.get("client") or ("-",))[0]
    ms = elapsed * 1000
    log.handle(log.makeRecord(
        log.name, logging.INFO, __file__, 0, "%s %s %d %.1fms %s",
        (method, path, status, ms, client), None,
        extra={"request_id": rid, "method": method, "path": path, "status": status,
               "duration_ms": round(ms, 3), "client": client},
    ))


def _from_headers(headers: Any) -> str | None:
    for name, value in headers:
        if name == HEADER:
            try:
                text = value.decode("ascii")
            except UnicodeDecodeError:
                return None
            return text if tracing.valid(text) else None
    return None


async def mark_route() -> None:
    """A ``before_request`` hook: the matched URL rule, for the metrics' ``route`` label."""
    rule = request.url_rule
    if rule is not None:
        request.scope[ROUTE_KEY] = rule.rule  # type: ignore[index]
