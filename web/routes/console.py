"""The web console: ``GET /`` (the page) and ``GET /console/<file>`` (its script and styles).

Static files shipped in the package (``web/console/``, package data), read once per app and
served with an ETag; no template, no build step, no third-party code. Everything the page shows
comes from the JSON API with the key the user signed in with (kept in ``sessionStorage``).
The page's Content-Security-Policy allows only its own script and styles, media from this
origin or ``blob:`` URLs, and connections to this origin.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import TYPE_CHECKING

from quart import Blueprint, Response, request

from protocols.errors import NotFound

if TYPE_CHECKING:
    from web.context import WebContext

TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
HEADERS = {
    "Cache-Control": "no-cache",  # revalidated with the ETag: a new release shows at once
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " media-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none';"
        " frame-ancestors 'none'"
    ),
}


def load() -> dict[str, tuple[bytes, str]]:
    """Each file's bytes and its ETag."""
    folder = resources.files("web") / "console"
    out = {}
    for name in TYPES:
        body = (folder / name).read_bytes()
        out[name] = (body, '"' + hashlib.sha256(body).hexdigest()[:20] + '"')
    return out


def blueprint(ctx: WebContext) -> Blueprint:
    bp = Blueprint("console", __name__)
    files = load()

    def send(name: str) -> Response:
        body, etag = files[name]
        headers = {**HEADERS, "ETag": etag}
        if etag in request.headers.get("If-None-Match", ""):
            return Response(b"", status=304, headers=headers)
        return Response(body, status=200, headers=headers, content_type=TYPES[name])

    @bp.route("/", methods=["GET", "HEAD"])
    async def page() -> Response:
        return send("index.html")

    @bp.route("/console/<name>", methods=["GET", "HEAD"])
    async def asset(name: str) -> Response:
        if name not in files or name == "index.html":
            raise NotFound(f"No console file {name[:64]!r}.")
        return send(name)

    return bp
