"""The HTTP front: ``create_app`` builds a new quart-trio app per call; ``serve`` runs one.

The supervisor starts ``serve`` as one child per incarnation (``await nursery.start(...)``):
the app holds no actors, no background tasks and no ``while_serving`` hooks, so a restarted
child simply builds a fresh app. Everything the routes need comes in through ``WebContext``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable

import hypercorn.trio
import trio
from hypercorn.config import Config
from quart_trio import QuartTrio
from quart_trio.wrappers import TrioRequest

from protocols.domain.voices import VoiceCatalog
from protocols.events import NO_EVENTS
from protocols.messages import SpeechJob, Voice
from protocols.ports import BlobStore, EventLog, EventSink, JobStore, SpeechProvider
from protocols.settings import Settings
from web import problems
from web.auth import KnownKeys
from web.routes import audio, events, health, jobs, usage, voices
from web.routes.voice_uploads import MAX_UPLOAD_BODY

#: room in the request body for JSON syntax and escapes around ``text`` (``\uXXXX`` = 6 bytes)
BODY_BYTES_PER_CHAR = 6
BODY_OVERHEAD = 4096
#: hypercorn does not close idle keep-alive connections at shutdown: it waits for them up to the
#: graceful timeout. Requests here are short, so stopping HTTP is bounded by a few seconds.
HTTP_GRACE_S = 5.0
KEEP_ALIVE_S = 2.0


async def _no_count(name: str) -> None:
    return None


async def _no_track(voice: Voice) -> None:
    return None


class ChorusRequest(TrioRequest):
    """The body limit is sized for JSON jobs; only ``POST /v1/voices`` (clone uploads) gets
    room for its audio samples (``web/routes/voice_uploads.py``)."""

    def __init__(self, method: str, scheme: str, path: str, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        upload = method == "POST" and path.rstrip("/") == "/v1/voices"
        if upload:
            kwargs["max_content_length"] = MAX_UPLOAD_BODY
        super().__init__(method, scheme, path, *args, **kwargs)
        if upload:
            self.max_content_length = MAX_UPLOAD_BODY


@dataclasses.dataclass(frozen=True)
class WebContext:
    settings: Settings
    store: JobStore
    blobs: BlobStore
    provider: SpeechProvider
    #: hand the job to the Producer; returns once it is durable in Redis.
    #: Raises ``QueueFull`` (channel full past the deadline) or ``QueueUnavailable``.
    submit: Callable[[SpeechJob], Awaitable[None]]
    #: per-dependency readiness, e.g. ``{"redis": True, "postgres": False}``
    readiness: Callable[[], Awaitable[dict[str, bool]]]
    #: add one to a shared counter (cache hits and misses); best effort
    count: Callable[[str], Awaitable[None]] = _no_count
    #: where routes publish events (never blocks)
    events: EventSink = NO_EVENTS
    #: what SSE streams read (its own bounded pool); None: the SSE routes answer 503
    event_log: EventLog | None = None
    #: set when the server is stopping: SSE streams end within one read block
    stopping: trio.Event | None = None
    #: voices (visibility, defaults, cloning); None: one built from ``store`` and ``provider``
    voices: VoiceCatalog | None = None
    #: API keys authenticated in the last few seconds (``web.auth``), per app
    known_keys: KnownKeys = dataclasses.field(default_factory=dict)
    #: schedule a new clone with VoiceSync at once (else it is found on its next rescan)
    track_voice: Callable[[Voice], Awaitable[None]] = _no_track


def create_app(ctx: WebContext) -> QuartTrio:
    """A new app object on every call (an app must not be served twice)."""
    app = QuartTrio(__name__)
    app.request_class = ChorusRequest
    app.config["MAX_CONTENT_LENGTH"] = (
        ctx.settings.max_text_chars * BODY_BYTES_PER_CHAR + BODY_OVERHEAD
    )
    app.config["BODY_TIMEOUT"] = 30
    app.config["PROPAGATE_EXCEPTIONS"] = False
    problems.install(app)
    for module in (jobs, events, audio, voices, usage, health):
        app.register_blueprint(module.blueprint(ctx))
    return app


def hypercorn_config(settings: Settings, host: str, port: int) -> Config:
    config = Config()
    bind_host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    config.bind = [f"{bind_host}:{port}"]
    config.accesslog = None  # quiet: no line per request
    config.errorlog = logging.getLogger("chorus.web.server")
    config.graceful_timeout = min(settings.shutdown_grace_s, HTTP_GRACE_S)
    config.keep_alive_timeout = KEEP_ALIVE_S
    config.include_server_header = False
    return config


async def serve(
    ctx: WebContext,
    *,
    host: str | None = None,
    port: int | None = None,
    shutdown_trigger: Callable[[], Awaitable[None]],
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Build a fresh app and serve it until ``shutdown_trigger`` returns.

    ``task_status.started`` reports the bound addresses (e.g. ``['http://127.0.0.1:41234']``)
    once the sockets listen, so ``port=0`` works. On shutdown, in-flight requests get
    ``settings.shutdown_grace_s`` to finish.
    """
    app = create_app(ctx)
    config = hypercorn_config(
        ctx.settings,
        ctx.settings.host if host is None else host,
        ctx.settings.port if port is None else port,
    )
    await hypercorn.trio.serve(
        app, config, shutdown_trigger=shutdown_trigger, task_status=task_status
    )
