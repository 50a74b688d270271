"""The real HTTP front (``web.app.serve`` on 127.0.0.1, in-memory fakes) over raw sockets.

- Keep-alive: after an answer given without reading the request body (401, 404, 405, 413), the
  next request on the same connection is answered, whether the body came with the headers or
  after them (the client writes the headers, the server answers, then the body follows).
- Bodies are limited while they stream: a chunked body larger than the route's limit is refused
  with 413 long before it has all been sent, for the clone upload and for the JSON routes.

The client here is a few lines of socket code on purpose: it must not share the server's HTTP
stack (h11), and it must be able to write a request in pieces.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from actors.pipeline.intake import Intake
from protocols.domain.voices import VoiceCatalog
from protocols.messages import SpeechJob
from protocols.providers.fake import FakeProvider
from protocols.settings import Settings
from tests.support.fakes import TEST_VOICES, FakeBlobStore, FakeJobStore
from tests.support.timing import capped_at
from web.app import serve
from web.context import WebContext

CAP_S = 15.0
#: how long a test waits for one answer; a hung connection fails the test well within CAP_S
ANSWER_S = 5.0


capped = capped_at(CAP_S)


# --- a raw HTTP/1.1 client ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def closes(self) -> bool:
        return "close" in self.headers.get("connection", "").lower()


class ConnectionClosed(Exception):
    """The server closed the connection instead of answering."""


class RawConnection:
    """One TCP connection; requests are written as given, answers parsed by hand."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.sent = 0

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)
        self.sent += len(data)

    async def _fill(self) -> None:
        chunk = await self.stream.receive_some(65536)
        if not chunk:
            raise ConnectionClosed(f"EOF after {len(self.buffer)} buffered bytes")
        self.buffer += chunk

    async def answer(self, timeout: float = ANSWER_S) -> Answer:  # noqa: ASYNC109
        """The next answer (Content-Length framed, as all of Chorus's answers are here)."""
        with trio.fail_after(timeout):
            while b"\r\n\r\n" not in self.buffer:
                await self._fill()
            head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
            status_line, *lines = head.decode("latin-1").split("\r\n")
            headers: dict[str, str] = {}
            for line in lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            self.buffer = bytearray(rest)
            length = int(headers.get("content-length", "0"))
            while len(self.buffer) < length:
                await self._fill()
            body = bytes(self.buffer[:length])
            del self.buffer[:length]
        return Answer(int(status_line.split()[1]), headers, body)

    async def closed_by_server(self, timeout: float = ANSWER_S) -> bool:  # noqa: ASYNC109
        """Whether the server ends the connection (EOF or reset) within ``timeout``."""
        with trio.move_on_after(timeout):
            try:
                while True:
                    await self._fill()
            except (ConnectionClosed, trio.BrokenResourceError):
                return True
        return False


def head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: chorus.test", *(f"{k}: {v}" for k, v in
                                                                headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


# --- the server -----------------------------------------------------------------------------


@dataclasses.dataclass
class Front:
    settings: Settings
    key: str
    port: int

    async def connect(self) -> RawConnection:
        return RawConnection(await trio.open_tcp_stream("127.0.0.1", self.port))

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@asynccontextmanager
async def running_front() -> AsyncIterator[Front]:
    settings = Settings(max_text_chars=100, shutdown_grace_s=1.0, db_timeout_s=1.0)
    store, blobs, provider = FakeJobStore(), FakeBlobStore(), FakeProvider(voices=TEST_VOICES)
    _, key = await store.create_user("alice")

    async def enqueue(job: SpeechJob) -> None:
        await trio.lowlevel.checkpoint()

    voices = VoiceCatalog(store, provider)
    intake = Intake(settings, store=store, blobs=blobs, provider=provider, voices=voices,
                    enqueue=enqueue)

    async def readiness() -> dict[str, bool]:
        await trio.lowlevel.checkpoint()
        return {"redis": True, "postgres": True}

    ctx = WebContext(settings=settings, store=store, blobs=blobs, provider=provider,
                     intake=intake, readiness=readiness, voices=voices)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            functools.partial(serve, ctx, host="127.0.0.1", port=0, shutdown_trigger=stop.wait)
        )
        yield Front(settings, key, int(binds[0].rsplit(":", 1)[1]))
        stop.set()


@pytest.fixture
async def front() -> AsyncIterator[Front]:
    async with running_front() as running:
        yield running


# --- keep-alive after an early answer ---------------------------------------------------------

#: JSON body limit of the test settings: 100 chars * 6 + 4096 (web/app.py)
JSON_LIMIT = 100 * 6 + 4096
BODY = b'{"text": "' + b"x" * 2000 + b'"}'
OVER = b'{"text": "' + b"x" * (JSON_LIMIT + 100) + b'"}'

#: (what, method, path, with the API key, body, expected status): answers given without
#: reading the body
EARLY = [
    ("401 no key", "POST", "/v1/jobs", False, BODY, 401),
    ("404 unknown route", "POST", "/v1/nope", True, BODY, 404),
    ("405 wrong method", "POST", "/healthz", True, BODY, 405),
    ("413 content-length over the limit", "POST", "/v1/jobs", True, OVER, 413),
    ("401 on a clone upload", "POST", "/v1/voices", False, BODY, 401),
    ("401 on a 300 KB clone upload", "POST", "/v1/voices", False, b"a" * 300_000, 401),
]
IDS = [case[0] for case in EARLY]


#: how the client writes a request: all at once; headers and body in two writes (as httpx
#: does); the headers, then, once the server has answered (or waits), the body
TIMINGS = ("one write", "two writes", "body after the answer")


async def early_then_next(front: Front, case: tuple[Any, ...], timing: str) -> None:
    _, method, path, keyed, body, status = case
    headers = {**(front.auth if keyed else {}), "Content-Type": "application/json",
               "Content-Length": str(len(body))}
    conn = await front.connect()
    if timing == "one write":
        await conn.send(head(method, path, headers) + body)
    else:
        await conn.send(head(method, path, headers))
        if timing == "body after the answer":
            await trio.testing.wait_all_tasks_blocked()
        await conn.send(body)
    first = await conn.answer()
    assert first.status == status, first
    # the next request on the same connection gets its answer
    await conn.send(head("GET", "/healthz", {}))
    second = await conn.answer()
    assert second.status == 200 and b"ok" in second.body, second
    await conn.stream.aclose()


@pytest.mark.parametrize("timing", TIMINGS)
@pytest.mark.parametrize("case", EARLY, ids=IDS)
@capped
async def test_keep_alive_after_an_early_answer(
    front: Front, case: tuple[Any, ...], timing: str
) -> None:
    for _ in range(5):  # it used to hang in a third of the tries with two writes: try often
        await early_then_next(front, case, timing)


@capped
async def test_an_unread_body_too_large_to_drain_closes_the_connection(front: Front) -> None:
    from web.bodies import DRAIN_MAX_BYTES

    size = DRAIN_MAX_BYTES + 4 * MIB
    conn = await front.connect()
    headers = {"Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(size)}

    async def send_body() -> None:
        try:
            await conn.send(b"a" * size)
        except trio.BrokenResourceError:  # the server closed after answering
            pass

    await conn.send(head("POST", "/v1/voices", headers))  # no key: 401 without reading
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_body)
        answer = await conn.answer()
        assert answer.status == 401 and answer.closes, answer
        assert await conn.closed_by_server()  # closed, not left hanging
        nursery.cancel_scope.cancel()
    await conn.stream.aclose()


@capped
async def test_an_unread_chunked_body_closes_the_connection(front: Front) -> None:
    conn = await front.connect()
    await conn.send(head("POST", "/v1/nope", {**front.auth, "Transfer-Encoding": "chunked"}))
    await conn.send(chunk(b"a" * 1000))  # its size is unknown: not worth waiting for
    answer = await conn.answer()
    assert answer.status == 404 and answer.closes, answer
    assert await conn.closed_by_server()
    await conn.stream.aclose()


@capped
async def test_an_idle_keep_alive_connection_is_closed_after_a_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # hypercorn re-arms its keep-alive timer inside the app's last send; quart-trio's
    # cancellation used to land there, and the connection stayed open for good
    monkeypatch.setattr("web.app.KEEP_ALIVE_S", 0.2)
    async with running_front() as front:
        conn = await front.connect()
        await conn.send(head("GET", "/healthz", {}))
        assert (await conn.answer()).status == 200
        assert await conn.closed_by_server(timeout=3.0)
        await conn.stream.aclose()


@capped
async def test_stopping_does_not_wait_for_an_idle_keep_alive_connection() -> None:
    # the same cancellation left idle connections without their timer, and a stop waited for
    # them for the whole graceful timeout (the test settings: 1 s)
    async with running_front() as front:
        conn = await front.connect()
        await conn.send(head("GET", "/healthz", {}))
        assert (await conn.answer()).status == 200
        stopping = trio.current_time()
    assert trio.current_time() - stopping < 0.5
    await conn.stream.aclose()


# --- bodies are limited while they stream -------------------------------------------------------

BOUNDARY = "chorus-test-boundary"
MIB = 1024 * 1024


async def stream_until_answered(
    conn: RawConnection, path: str, headers: dict[str, str], prefix: bytes, total: int,
    piece: int,
) -> tuple[Answer, int]:
    """POST a chunked body of up to ``total`` bytes, reading the answer meanwhile; the sending
    stops when the answer arrives. Returns the answer and the bytes sent by then."""
    answered = trio.Event()

    async def send_body() -> None:
        await conn.send(head("POST", path, {**headers, "Transfer-Encoding": "chunked"}))
        await conn.send(chunk(prefix))
        filler = chunk(b"a" * piece)
        try:
            while conn.sent < total and not answered.is_set():
                await conn.send(filler)
            if not answered.is_set():
                await conn.send(b"0\r\n\r\n")
        except trio.BrokenResourceError:  # the server closed after answering
            pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_body)
        answer = await conn.answer(timeout=CAP_S - 2)
        sent = conn.sent
        answered.set()
        nursery.cancel_scope.cancel()
    return answer, sent


@capped
async def test_chunked_clone_upload_is_refused_while_it_streams(front: Front) -> None:
    from web.routes.voice_uploads import MAX_UPLOAD_BODY

    prefix = (
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nbig\r\n"
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"files\"; "
        f"filename=\"big.mp3\"\r\nContent-Type: audio/mpeg\r\n\r\n"
    ).encode()
    total = MAX_UPLOAD_BODY + 32 * MIB  # what the client would send if nobody stopped it
    conn = await front.connect()
    answer, sent = await stream_until_answered(
        conn, "/v1/voices",
        {**front.auth, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        prefix, total, piece=MIB,
    )
    print(f"413 after {sent / MIB:.1f} MiB of {total / MIB:.1f} MiB sent")
    assert answer.status == 413, answer
    # answered once the limit was passed, not after the whole body: the server did not read
    # (or buffer) the rest, and the client still had megabytes to send
    assert MAX_UPLOAD_BODY < sent + 2 * MIB, sent
    assert sent < total - 16 * MIB, (sent, total)
    # the rest is not read either: the answer closes the connection, and the server does
    assert answer.closes, answer
    assert await conn.closed_by_server()
    await conn.stream.aclose()


@capped
async def test_chunked_json_body_is_refused_while_it_streams(front: Front) -> None:
    total = 16 * MIB
    conn = await front.connect()
    answer, sent = await stream_until_answered(
        conn, "/v1/jobs", {**front.auth, "Content-Type": "application/json"},
        b'{"text": "', total, piece=64 * 1024,
    )
    print(f"413 after {sent / 1024:.0f} KiB of {total / MIB:.0f} MiB sent")
    assert answer.status == 413, answer
    assert sent < 4 * MIB, sent
    assert answer.closes, answer
    assert await conn.closed_by_server()
    await conn.stream.aclose()
