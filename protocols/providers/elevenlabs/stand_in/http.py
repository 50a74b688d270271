"""HTTP plumbing for the fake ElevenLabs server: a threaded stdlib server, requests, replies and
the three error body shapes of the real API.

The server runs in a background thread of the test process (not on the trio loop), so worker
subprocesses and the test itself can hit it at once while the test reads counters under a lock.
``ThreadingHTTPServer`` gives one daemon thread per connection; HTTP/1.1 keep-alive needs an
exact ``Content-Length`` (or chunked framing) on every reply, which ``_Handler._send`` guarantees.

Error shapes (reference §2):

- A, current: ``{"detail": {"type", "code", "message", "status", "request_id", "param"?}}``
- B, legacy: ``{"detail": {"status", "message"}}``
- C, pydantic 422: ``{"detail": [{"loc", "msg", "type"}]}``
"""

from __future__ import annotations

import io
import json
import secrets
import socket
import string
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.formparser import MultiPartParser
from werkzeug.http import parse_options_header

ErrorShape = Literal["current", "legacy"]
_ALNUM = string.ascii_letters + string.digits
_CHUNK = 4096

#: ``detail.type`` of the current error shape, by HTTP status (our choice of names).
ERROR_TYPES: Mapping[int, str] = {
    400: "validation_error",
    401: "authentication_error",
    403: "authorization_error",
    404: "not_found",
    409: "conflict",
    422: "validation_error",
    429: "rate_limit_error",
}


def new_id(length: int = 20) -> str:
    """A random id shaped like ElevenLabs' (20 letters and digits by default)."""
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


@dataclass
class Reply:
    """One HTTP answer. ``chunked`` sends the body with chunked transfer encoding."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    chunked: bool = False
    #: with ``chunked``: a pause before each chunk after the first (audio "being made")
    chunk_delay_s: float = 0.0
    #: with ``chunked``: the chunks as sent (empty: the body, 4 KiB at a time)
    pieces: tuple[bytes, ...] = ()

    def error_code(self) -> str | None:
        """``detail.code`` (or ``detail.status``) of a JSON error body, if any."""
        if self.status < 400 or self.content_type != "application/json":
            return None
        try:
            detail = json.loads(self.body).get("detail")
        except (ValueError, AttributeError):
            return None
        if isinstance(detail, dict):
            return detail.get("code") or detail.get("status")
        return "validation_error" if isinstance(detail, list) else None


class ApiFailure(Exception):
    """Raised by a route to answer with ``reply`` (always an error)."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def json_reply(status: int, obj: Any, headers: Mapping[str, str] | None = None) -> Reply:
    """A JSON answer."""
    return Reply(status, json.dumps(obj).encode(), headers=dict(headers or {}))


def error_reply(
    status: int,
    code: str,
    message: str,
    *,
    shape: ErrorShape = "current",
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
    legacy_status: str | None = None,
) -> Reply:
    """An error in the current (A) or legacy (B) shape. In A, ``status`` repeats ``code`` unless
    ``legacy_status`` names the older status (e.g. ``too_many_concurrent_requests``)."""
    if shape == "legacy":
        detail: dict[str, Any] = {"status": code, "message": message}
    else:
        kind = ERROR_TYPES.get(status, "service_error" if status >= 500 else "client_error")
        detail = {
            "type": kind,
            "code": code,
            "message": message,
            "status": legacy_status or code,
            "request_id": new_id(32),
        }
        if param is not None:
            detail["param"] = param
    return json_reply(status, {"detail": detail}, headers)


def fail(status: int, code: str, message: str, **kwargs: Any) -> ApiFailure:
    """``raise fail(400, "invalid_parameters", "...")``."""
    return ApiFailure(error_reply(status, code, message, **kwargs))


def validation_failure(errors: Iterable[tuple[tuple[str | int, ...], str, str]]) -> ApiFailure:
    """A 422 in the pydantic list shape from ``(loc, msg, type)`` triples."""
    detail = [{"loc": list(loc), "msg": msg, "type": kind} for loc, msg, kind in errors]
    return ApiFailure(json_reply(422, {"detail": detail}))


@dataclass
class Request:
    """A parsed request: ``path`` is unquoted, ``query`` keeps repeated keys."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The last value of query parameter ``name``."""
        values = self.query.get(name)
        return values[-1] if values else default

    def json(self) -> Any:
        """The body as JSON, or a 422 ``json_invalid``."""
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:
            raise validation_failure(
                [(("body",), f"JSON decode error: {exc}", "json_invalid")]
            ) from None

    def form(self) -> tuple[MultiDict[str, str], MultiDict[str, FileStorage]]:
        """The multipart form (fields, files), parsed by werkzeug; 422 when not multipart."""
        ctype, options = parse_options_header(self.headers.get("content-type", ""))
        boundary = options.get("boundary")
        if ctype != "multipart/form-data" or not boundary:
            raise validation_failure([(("body",), "Expected multipart/form-data", "value_error")])
        parser = MultiPartParser(max_form_memory_size=64 * 1024 * 1024)
        try:
            return parser.parse(io.BytesIO(self.body), boundary.encode(), len(self.body))
        except ValueError as exc:
            raise validation_failure(
                [(("body",), f"Bad multipart body: {exc}", "value_error")]
            ) from None


App = Callable[[Request], Reply]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle keep-alive connection is dropped after this
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms stall
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_DELETE = do_PATCH = do_PUT = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read counters, not logs."""

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        try:
            body = self._read_body()
            url = urlsplit(self.path)
            request = Request(
                method=self.command,
                path=unquote(url.path).rstrip("/") or "/",
                query=parse_qs(url.query, keep_blank_values=True),
                headers=self.headers,
                body=body,
            )
            reply = self.server.app(request)
            self._send(reply)
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
            self.close_connection = True  # the client went away (e.g. a client-side timeout)

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("content-type", reply.content_type)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.chunked:
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            pieces = reply.pieces or [
                reply.body[start : start + _CHUNK] for start in range(0, len(reply.body), _CHUNK)
            ]
            for start, piece in enumerate(pieces):
                if start and reply.chunk_delay_s:
                    self.wfile.flush()
                    time.sleep(reply.chunk_delay_s)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("content-length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # listen backlog: many concurrent clients (stdlib default 5 resets)
    daemon_threads = True

    def __init__(self, host: str, app: App) -> None:
        self.app = app
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__((host, 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request (killed, timed out) is not an error here."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def track(self, sock: socket.socket, *, add: bool) -> None:
        with self._conn_lock:
            (self._connections.add if add else self._connections.discard)(sock)

    def drop_connections(self) -> None:
        """Shut down every open connection, so no handler thread outlives the server."""
        with self._conn_lock:
            connections = list(self._connections)
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class HttpThread:
    """A ``_Server`` on ``host`` (port 0) serving ``app`` from one background thread."""

    def __init__(self, app: App, host: str = "127.0.0.1") -> None:
        self._server = _Server(host, app)
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-elevenlabs:{self.port}",
            daemon=True,
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.drop_connections()
        self._server.server_close()
        self._thread.join(timeout=5)
