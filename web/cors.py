"""CORS for browsers on other origins (``CHORUS_CORS_ORIGINS``; empty: off), through
``quart-cors`` (Quart's author's extension: an ``after_request`` hook, so problems and
streamed audio get the headers too, and Quart's automatic ``OPTIONS`` answers preflights).

No credentials (no cookies: API keys travel in headers), so any request header may be asked
for; the headers a browser script needs to read are exposed (``Location`` of a new job,
``Retry-After`` of a 503, request ids, the audio's ``ETag`` and ranges).
"""

from __future__ import annotations

from quart import Quart
from quart_cors import cors

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
EXPOSED = (
    "Location", "Retry-After", "X-Request-ID", "ETag", "Content-Length", "Content-Range",
    "Accept-Ranges", "Content-Disposition",
)
PREFLIGHT_MAX_AGE_S = 600


def install(app: Quart, origins: tuple[str, ...]) -> None:
    """CORS headers on every answer to an allowed origin; nothing when ``origins`` is empty."""
    if not origins:
        return
    cors(
        app,
        allow_origin="*" if "*" in origins else list(origins),
        allow_methods=list(METHODS),
        allow_headers=["*"],
        expose_headers=list(EXPOSED),
        max_age=PREFLIGHT_MAX_AGE_S,
        allow_credentials=False,
    )
