"""The HTTP front: ``create_app`` builds a new quart-trio app per call; ``serve`` runs one;
``front_door`` is the Service's HTTP child.

The supervisor starts ``front_door`` as one child per incarnation (``await nursery.start(...)``):
it opens its own Redis connections, builds a ``WebContext`` from the service's parts and serves
a fresh app. The app holds no actors, no background tasks and no ``while_serving`` hooks, so a
restarted child simply builds a fresh one. Everything the routes need comes in through
``WebContext``.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING

import trio
from hypercorn.config import Config, Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app
from quart_trio import QuartTrio
from quart_trio.wrappers import TrioRequest

from actors.ops import overview as ops
from actors.pipeline.live import FOLLOW_BLOCK_MS, LiveFollower
from protocols.dictionaries import MAX_DICTIONARY_BODY
from protocols.errors import ChorusError, ConfigError
from protocols.metrics.exposition import QueueFigures
from protocols.settings import Settings
from web import cors, problems
from web.bodies import LimitedBody, UnreadBodyGuard
from web.context import WebContext
from web.observe import Observe, mark_route
from web.routes import (
    admin_queue,
    admin_users,
    apidocs,
    audio,
    console,
    dictionaries,
    events,
    health,
    job_control,
    jobs,
    storybooks,
    timings,
    usage,
    voices,
)
from web.routes import live as live_routes
from web.routes import metrics as metrics_route
from web.routes.compat import blueprints as compat_blueprints
from web.routes.voice_uploads import MAX_UPLOAD_BODY
from web.signing import SECRET_NAME as SIGNING_SECRET
from web.signing import AudioSigner

if TYPE_CHECKING:
    from actors.service import Service

#: room in the request body for JSON syntax and escapes around ``text`` (``\uXXXX`` = 6 bytes)
BODY_BYTES_PER_CHAR = 6
BODY_OVERHEAD = 4096
#: in-flight requests get this long at shutdown (requests here are short). Idle keep-alive
#: connections close at once, and after KEEP_ALIVE_S, now that their timer survives quart-trio's
#: cancellation (``web.bodies.UnreadBodyGuard``).
HTTP_GRACE_S = 5.0
KEEP_ALIVE_S = 2.0


class ListenFailed(ConfigError):
    """The HTTP front cannot listen on its address (in use, not allowed): a configuration
    error, reported with the address. At start the supervisor fails fast on it (exit 1)."""

    code = "listen_failed"
    title = "The HTTP address cannot be listened on"


class ChorusRequest(TrioRequest):
    """The body limit is sized for JSON jobs; ``POST /v1/voices`` (clone uploads) gets room
    for its audio samples (``web/routes/voice_uploads.py``) and ``POST /v1/storybooks`` for a
    whole book (``large_bodies``, set per app), the pronunciation-dictionary routes for a
    thousand rules or a PLS file (``large_prefixes``). The limit holds while the body streams,
    with or without Content-Length (``web.bodies.LimitedBody``)."""

    body_class = LimitedBody
    large_bodies: dict[str, int] = {"/v1/voices": MAX_UPLOAD_BODY}
    #: the same by path prefix (routes with ids in the path)
    large_prefixes: dict[str, int] = {"/v1/pronunciation-dictionaries/": MAX_DICTIONARY_BODY}

    def __init__(self, method: str, scheme: str, path: str, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        limit = None
        if method == "POST":
            limit = self.large_bodies.get(path.rstrip("/")) or next(
                (size for prefix, size in self.large_prefixes.items() if path.startswith(prefix)),
                None,
            )
        if limit is not None:
            kwargs["max_content_length"] = limit
        super().__init__(method, scheme, path, *args, **kwargs)
        if limit is not None:
            self.max_content_length = limit


#: the route modules (``web/routes/``), each with a ``blueprint(ctx)``
ROUTES = (
    jobs, job_control, live_routes, timings, events, audio, voices, storybooks, dictionaries,
    usage, health, metrics_route, admin_users, admin_queue, console, apidocs,
)


def create_app(ctx: WebContext) -> QuartTrio:
    """A new app object on every call (an app must not be served twice)."""
    app = QuartTrio(__name__)
    book_body = ctx.settings.storybook_max_chars * BODY_BYTES_PER_CHAR + 64 * BODY_OVERHEAD
    app.request_class = type("Request", (ChorusRequest,), {  # type: ignore[assignment]
        "large_bodies": {**ChorusRequest.large_bodies, "/v1/storybooks": book_body}
    })
    app.asgi_app = UnreadBodyGuard(app.asgi_app)  # type: ignore[method-assign]
    # outermost: request ids, the access log and the HTTP metrics (web/observe.py)
    app.asgi_app = Observe(  # type: ignore[method-assign]
        app.asgi_app, access_log=ctx.settings.access_log
    )
    app.before_request(mark_route)
    app.config["MAX_CONTENT_LENGTH"] = (
        ctx.settings.max_text_chars * BODY_BYTES_PER_CHAR + BODY_OVERHEAD
    )
    app.config["BODY_TIMEOUT"] = 30
    app.config["PROPAGATE_EXCEPTIONS"] = False
    problems.install(app)
    for module in ROUTES:
        app.register_blueprint(module.blueprint(ctx))
    for bp in compat_blueprints(ctx):  # the ElevenLabs- and OpenAI-shaped routes
        app.register_blueprint(bp)
    cors.install(app, ctx.settings.cors_origins)
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
    sockets = listen(config)
    try:
        # ``hypercorn.trio.serve`` minus its warnings, with the sockets bound here
        await worker_serve(
            wrap_app(app, config.wsgi_max_body_size, None), config, sockets=sockets,
            shutdown_trigger=shutdown_trigger, task_status=task_status,
        )
    finally:
        for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
            sock.close()


def listen(config: Config) -> Sockets:
    """The listening sockets for ``config.bind``. Raises ``ListenFailed`` naming the address
    when one cannot be bound (hypercorn's own error names neither the address nor the port)."""
    try:
        sockets = config.create_sockets()
    except OSError as exc:
        where = ", ".join(config.bind)
        if exc.errno == errno.EADDRINUSE:
            why = "address already in use (another process listens there; set CHORUS_PORT)"
        else:
            why = exc.strerror or type(exc).__name__
        raise ListenFailed(f"cannot listen on {where}: {why}", address=where) from exc
    for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
        sock.listen(config.backlog)
    return sockets


async def front_door(
    service: Service,
    stop: trio.Event,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The Service's HTTP child (``actors.service.Front``), one call per incarnation: a queue
    client for readiness and clone tracking, the SSE pool, and a fresh ``WebContext`` on the
    service's parts, served until ``stop`` is set."""
    s = service.settings
    sse_pool = service.redis.event_bus(
        block_ms=min(s.read_block_ms, 1000), max_connections=s.sse_max_streams + 2
    )
    live_pool = service.redis.live(
        block_ms=FOLLOW_BLOCK_MS, max_connections=s.sse_max_streams + 2
    )
    async with service.redis.queue() as queue, sse_pool as event_log, live_pool as live:
        follower = LiveFollower(s, store=service.store, blobs=service.blobs, reader=live)

        async def readiness() -> dict[str, bool]:
            return {"redis": await _ok(queue.ping), "postgres": await _ok(service.store.ping)}

        async def queue_figures() -> QueueFigures:
            lanes = await queue.lane_figures()
            return QueueFigures(
                lanes={str(lane): figures for lane, figures in lanes.items()},
                dead_letters=await queue.dead_letter_count(),
                slots_in_use=await service.coordinator(queue.client).slots_in_use(),
            )

        ctx = WebContext(
            settings=s, store=service.store, blobs=service.blobs, provider=service.provider,
            intake=service.intake, readiness=readiness, events=service.events,
            event_log=event_log, stopping=stop, voices=service.voices,
            track_voice=partial(service.track_voice, queue),
            books=service.books, storybooks=service.storybooks,
            book_outputs=service.book_outputs, kick_runner=service.kick_runner,
            dictionaries=service.dictionaries, queue_figures=queue_figures,
            alignment_of=service.store.alignment_of,
            mark_job_cancelled=service.mark_job_cancelled,
            accounts=service.accounts,
            audio_signer=await audio_signer(service),
            overview=partial(ops.of_service, service, queue),
            redrive=partial(ops.redrive_one, service, queue),
            follow_audio=follower.follow,
        )
        await serve(ctx, shutdown_trigger=stop.wait, task_status=task_status)


async def audio_signer(service: Service) -> AudioSigner | None:
    """The signer of audio URLs: ``CHORUS_SIGNING_KEY``, else the key kept in Postgres (made
    once, shared by every host). Postgres away: None for this incarnation (plain URLs)."""
    s = service.settings
    if s.signing_key is not None:
        return AudioSigner(s.signing_key.reveal().encode(), s.audio_url_ttl_s)
    if service.accounts is None:
        return None
    with trio.move_on_after(s.db_timeout_s):
        try:
            secret = await service.accounts.server_secret(SIGNING_SECRET)
            return AudioSigner(secret, s.audio_url_ttl_s)
        except ChorusError as exc:
            logging.getLogger("chorus.web").warning(
                "audio URLs are not signed (no signing key): %s", exc.code
            )
    return None


async def _ok(check: Callable[[], Awaitable[None]]) -> bool:
    with trio.move_on_after(2):
        try:
            await check()
            return True
        except ChorusError:
            return False
    return False
