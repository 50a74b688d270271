"""The ElevenLabs- and OpenAI-compatible routes, registered together (``web/app.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Blueprint

from web.routes import compat_models, el_account, el_speech, openai_speech

if TYPE_CHECKING:
    from web.context import WebContext


def blueprints(ctx: WebContext) -> list[Blueprint]:
    return [m.blueprint(ctx) for m in (el_speech, el_account, compat_models, openai_speech)]
