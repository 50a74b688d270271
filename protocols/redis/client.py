"""The coredis client every Redis adapter runs on, and how its errors become ours.

- ``open_client``: a client of its own, on a pool that gives back the slots of dead
  connections. What leaves its block is one exception, not coredis' exception group.
- ``REDIS_ERRORS``: what a Redis call can raise: coredis' exceptions, and the builtin
  ``ConnectionError`` / ``TimeoutError`` / ``OSError`` the client lets through from its sockets.
- ``redis_errors(what)``: around Redis calls, turns those into ``QueueUnavailable`` (retryable),
  chained ``from`` the original. Every adapter in ``protocols.redis`` maps its errors with it.
- ``as_str``: a reply value (bytes or not) as ``str``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import coredis
import coredis.exceptions

from protocols.errors import QueueUnavailable

__all__ = ["REDIS_ERRORS", "as_str", "open_client", "redis_errors"]

#: every exception a Redis call may raise (each coredis exception class derives from
#: ``RedisError``; the builtin ones come from the client's sockets and its stream timeout)
REDIS_ERRORS: tuple[type[Exception], ...] = (
    coredis.exceptions.RedisError,
    ConnectionError,
    TimeoutError,
    OSError,
)


@contextmanager
def redis_errors(what: str, *, detail: bool = False) -> Iterator[None]:
    """Around Redis calls (awaits included): a Redis error leaves as ``QueueUnavailable`` with
    the message ``"<what> failed: <exception class>"`` (with ``detail``: ``"<what>: <exception
    text>"``), chained from it. Anything else, ``trio.Cancelled`` included, passes unchanged."""
    try:
        yield
    except REDIS_ERRORS as exc:
        raise _unavailable(what, exc, detail=detail) from exc


def _unavailable(what: str, exc: BaseException, *, detail: bool = False) -> QueueUnavailable:
    return QueueUnavailable(f"{what}: {exc}" if detail else f"{what} failed: {type(exc).__name__}")


def as_str(value: Any) -> str:
    """A reply value as text: bytes are decoded (UTF-8), anything else goes through ``str``."""
    return value.decode() if isinstance(value, bytes) else str(value)


class _SlotKeepingPool(coredis.ConnectionPool):
    """coredis 6.9 loses a pool slot whenever a connection dies while leased (a blocking read
    killed by CLIENT KILL, a proxy reset, a timeout): ``release()`` re-queues only usable
    connections. Give the slot back, so dead connections cannot exhaust the pool."""

    def release(self, connection: Any) -> None:
        usable = connection.usable
        super().release(connection)
        slots = self._available_connections
        if not usable and not slots.full():
            slots.append_nowait(None)  # as coredis does for a connection that dies idle


@asynccontextmanager
async def open_client(
    url: str,
    *,
    stream_timeout: float,
    max_connections: int = 8,
    pool_timeout: float = 5.0,
) -> AsyncIterator[coredis.Redis[bytes]]:
    """A coredis client of its own (coredis leaks a pool slot per dead blocking connection: the
    pool here gives it back, and a fresh client per actor incarnation bounds whatever else might
    leak). ``stream_timeout`` must exceed any BLOCK.

    What leaves the block comes out as the one exception it is, not as coredis' exception
    group. coredis' own exceptions, and any Redis error the client raised while opening or
    closing, come out as ``QueueUnavailable``; anything else the caller's code raised in the
    block comes out unchanged (an ``OSError`` of the HTTP front stays that ``OSError``)."""
    pool = _SlotKeepingPool.from_url(
        url,
        decode_responses=False,
        stream_timeout=stream_timeout,
        connect_timeout=min(stream_timeout, 5.0),
        max_connections=max_connections,
        timeout=pool_timeout,
    )
    client: coredis.Redis[bytes] = coredis.Redis(connection_pool=pool, decode_responses=False)
    from_body: BaseException | None = None
    try:
        async with client:
            try:
                yield client
            except BaseException as exc:  # noted, then re-raised: whose error it is matters
                from_body = exc
                raise
    except BaseException as exc:
        # coredis' pool owns a task group, so what leaves this block usually arrives as a
        # group: give callers back the one exception raised (typed, when it is Redis')
        sole = _sole(exc)
        if sole is None:
            raise
        if isinstance(sole, coredis.exceptions.RedisError) or (
            isinstance(sole, REDIS_ERRORS) and not _raised_in(sole, from_body)
        ):
            raise _unavailable("Redis connection", sole) from sole
        if sole is exc:
            raise
        raise sole  # noqa: B904 - the original exception, with its own traceback


def _sole(exc: BaseException) -> BaseException | None:
    """The one exception in ``exc`` (itself when not a group); None when there are several."""
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return exc


def _raised_in(exc: BaseException, raised: BaseException | None) -> bool:
    """Whether ``exc`` is ``raised`` or one of the exceptions grouped in it."""
    if raised is exc:
        return True
    if isinstance(raised, BaseExceptionGroup):
        return any(_raised_in(exc, inner) for inner in raised.exceptions)
    return False
