"""``GET /openapi.json`` (the API's OpenAPI 3.1 document, made from this app's routes:
``web/openapi/``) and ``GET /docs``: Swagger UI, served by Chorus itself from the pinned
``swagger-ui-py`` package's files, so the page works offline (no CDN). No authentication:
the document describes the API, not anyone's data.
"""

from __future__ import annotations

import html
import importlib.resources
from typing import TYPE_CHECKING

import msgspec
import trio
from quart import Blueprint, Response, current_app

from protocols.errors import NotFound
from web.openapi.document import build

if TYPE_CHECKING:
    from web.context import WebContext

#: the Swagger UI files the page uses (nothing else in the package is served)
ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui-standalone-preset.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "docs.js": "text/javascript; charset=utf-8",
}
#: ours: starts Swagger UI on /openapi.json (a file, not an inline script: CSP-friendly)
DOCS_JS = b"""window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout", validatorUrl: null, tryItOutEnabled: false
  });
};
"""
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title} API reference</title>
  <link rel="stylesheet" href="/docs/static/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/static/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <noscript>This page needs JavaScript; the document itself is at
    <a href="/openapi.json">/openapi.json</a>.</noscript>
  <script src="/docs/static/swagger-ui-bundle.js"></script>
  <script src="/docs/static/swagger-ui-standalone-preset.js"></script>
  <script src="/docs/static/docs.js"></script>
</body>
</html>
"""


def _asset(name: str) -> bytes:
    if name == "docs.js":
        return DOCS_JS
    return importlib.resources.files("swagger_ui").joinpath("static", name).read_bytes()


def blueprint(ctx: WebContext) -> Blueprint:
    bp = Blueprint("apidocs", __name__)
    made: dict[str, bytes] = {}  # per app: the document once, the assets as first asked

    @bp.get("/openapi.json")
    async def openapi_json() -> Response:
        if "doc" not in made:
            made["doc"] = msgspec.json.encode(build(current_app))
        return Response(made["doc"], 200, content_type="application/json",
                        headers={"Cache-Control": "no-cache"})

    @bp.get("/docs")
    async def docs() -> Response:
        page = PAGE.format(title=html.escape("Chorus"))
        return Response(page, 200, content_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-cache"})

    @bp.get("/docs/static/<name>")
    async def docs_asset(name: str) -> Response:
        if name not in ASSETS:
            raise NotFound(f"No docs asset {name[:64]!r}.")
        if name not in made:
            made[name] = await trio.to_thread.run_sync(_asset, name)
        return Response(made[name], 200, content_type=ASSETS[name],
                        headers={"Cache-Control": "public, max-age=86400"})

    return bp
