"""Request bodies at the HTTP front: a limit that holds while a body streams, and connections
that stay usable after an answer given before the body was read.

- ``LimitedBody`` (the body container of ``web.app.ChorusRequest``): Quart checks its limit
  against what the container still *holds*, and a consumer that iterates the body (the
  multipart parser of ``POST /v1/voices``) empties it as it goes, so a chunked upload (no
  Content-Length) used to be read to its end before any size check. This one counts every byte
  that arrives and refuses (413) as soon as the total passes the limit.
- ``UnreadBodyGuard`` (ASGI middleware around the Quart app), for answers given before the body
  was read (401, 404, 405, 413, ...). Two things went wrong in the stack (hypercorn 0.18,
  quart-trio 0.12): hypercorn does its connection bookkeeping (recycle the connection, or close
  it when the request body is unfinished) inside the app's last ``send``, and hands the app
  ``http.disconnect`` from there; quart-trio then cancels the task that is still in that
  ``send``. The close is cancelled half done and the connection is left with nobody to answer
  the next request; after a complete request the keep-alive idle timer is never re-armed.
  The guard (1) reads and discards what is left of the body before the answer ends, bounded in
  bytes and time, so hypercorn sees the request complete and keeps the connection; (2) says
  ``Connection: close`` when the rest is too large or of unknown size; (3) shields the last
  ``send`` from the app's cancellation (with its own deadline), so hypercorn finishes its
  bookkeeping either way. See docs/ARCHITECTURE.md, "The HTTP front and its connections".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio
from quart_trio.wrappers.request import TrioBody
from werkzeug.exceptions import RequestEntityTooLarge

__all__ = ["DRAIN_MAX_BYTES", "DRAIN_S", "FINISH_S", "LimitedBody", "UnreadBodyGuard"]

#: at most this much of an unread body is read and discarded to keep a connection alive ...
DRAIN_MAX_BYTES = 1024 * 1024
#: ... for at most this long; beyond either, the connection is closed after the answer
DRAIN_S = 2.0
#: the end of an answer (hypercorn's bookkeeping in the last ``send``) is shielded this long
FINISH_S = 5.0

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class LimitedBody(TrioBody):
    """Quart's body container, limited on the bytes received, not the bytes held."""

    def __init__(
        self, expected_content_length: int | None, max_content_length: int | None
    ) -> None:
        super().__init__(expected_content_length, max_content_length)
        self.received = 0

    def append(self, data: bytes) -> None:
        # ``_must_raise``, ``_data`` and ``_max_content_length`` are Quart's own (pinned in
        # constraints.txt): the refusal reaches the route the way Quart's own 413 does
        if not data or self._must_raise is not None:
            return
        self.received += len(data)
        limit = self._max_content_length
        if limit is not None and self.received > limit:
            self._data.clear()  # nobody will read it now
            self._must_raise = RequestEntityTooLarge()
            self.set_complete()
            return
        super().append(data)

    async def __anext__(self) -> bytes:
        # Quart's own checks the refusal only before waiting: a consumer woken by it would
        # see a body that simply ended
        try:
            data = await super().__anext__()
        except StopAsyncIteration:
            if self._must_raise is not None:
                raise self._must_raise from None
            raise
        if self._must_raise is not None:
            raise self._must_raise
        return data


class _Body:
    """What the guard knows of one request's body, from the messages the app receives."""

    def __init__(self, scope: MutableMapping[str, Any], receive: Receive) -> None:
        self._receive = receive
        self.received = 0
        self.complete = trio.Event()
        #: the announced size: Content-Length; None for a chunked body; 0 without either
        self.length: int | None = 0
        for name, value in scope.get("headers", ()):
            name = name.lower()
            if name == b"transfer-encoding":
                self.length = None
                break
            if name == b"content-length":
                try:
                    self.length = int(value)
                except ValueError:
                    self.length = None

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.complete.set()
        elif message["type"] == "http.disconnect":
            self.complete.set()
        return message

    def drainable(self, max_bytes: int) -> bool:
        """Whether what is left of the body is known and small enough to read and discard."""
        if self.complete.is_set():
            return True
        return self.length is not None and self.length - self.received <= max_bytes

    async def drain(self, max_bytes: int, timeout: float) -> bool:  # noqa: ASYNC109
        """Read and discard the rest of the body (at most ``max_bytes`` more, for at most
        ``timeout`` seconds); whether the body is complete now. The app may be receiving too:
        every message passes through ``receive``, whoever asked for it."""
        if self.complete.is_set():
            return True
        budget = self.received + max_bytes
        with trio.move_on_after(timeout):
            async with trio.open_nursery() as nursery:

                async def pull() -> None:
                    while self.received <= budget:
                        await self.receive()
                    nursery.cancel_scope.cancel()  # over the budget: give up

                nursery.start_soon(pull)
                await self.complete.wait()
                nursery.cancel_scope.cancel()
        return self.complete.is_set()


class UnreadBodyGuard:
    """ASGI middleware (see the module docstring): ``app.asgi_app = UnreadBodyGuard(...)``."""

    def __init__(
        self,
        app: Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]],
        *,
        max_bytes: int = DRAIN_MAX_BYTES,
        drain_s: float = DRAIN_S,
        finish_s: float = FINISH_S,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.drain_s = drain_s
        self.finish_s = finish_s

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send
                       ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = _Body(scope, receive)
        closing = False

        async def guarded_send(message: Message) -> None:
            nonlocal closing
            kind = message["type"]
            if kind == "http.response.start" and not body.drainable(self.max_bytes):
                closing = True
                headers = [(k, v) for k, v in message.get("headers", ())
                           if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            if kind == "http.response.body" and not message.get("more_body", False):
                if not closing:
                    await body.drain(self.max_bytes, self.drain_s)
                # hypercorn recycles or closes the connection inside this call: the app's
                # cancellation (quart-trio's, on the http.disconnect sent from here) must wait
                with trio.CancelScope(shield=True, deadline=trio.current_time() + self.finish_s):
                    await send(message)
                return
            await send(message)

        await self.app(scope, body.receive, guarded_send)
