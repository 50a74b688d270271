"""protocols/redis/client.py: ``redis_errors`` maps every Redis client error to
``QueueUnavailable`` (chained from it) and lets everything else through, cancellation included."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import coredis.exceptions
import pytest
import trio

from protocols.errors import QueueUnavailable
from protocols.redis.client import REDIS_ERRORS, redis_errors

#: how to build the coredis exceptions that do not take a single message
RECIPES: dict[str, Callable[[type[BaseException]], BaseException]] = {
    "AskError": lambda cls: cls("3999 127.0.0.1:6381"),  # "<slot> <host:port>"
    "MovedError": lambda cls: cls("3999 127.0.0.1:6381"),
    "CommandNotSupportedError": lambda cls: cls("XAUTOCLAIM", "6.0.0"),
    "CommandSyntaxError": lambda cls: cls({"count"}, "boom"),
    "PersistenceError": lambda cls: cls(b"SET", 1, 1, 100),
    "ReplicationError": lambda cls: cls(b"SET", 1, 100),
}

COREDIS_ERRORS = sorted(
    (
        cls for _, cls in inspect.getmembers(coredis.exceptions, inspect.isclass)
        if issubclass(cls, BaseException)
    ),
    key=lambda cls: cls.__name__,
)


def build(cls: type[BaseException]) -> BaseException:
    """An instance of ``cls``: with one message, or the way its recipe says."""
    recipe = RECIPES.get(cls.__name__)
    return recipe(cls) if recipe is not None else cls("boom")


def test_every_coredis_exception_class_is_found_and_can_be_built():
    names = {cls.__name__ for cls in COREDIS_ERRORS}
    assert len(names) >= 40, names  # the enumeration did find coredis' exceptions
    assert {"RedisError", "ConnectionError", "ResponseError", "WatchError"} <= names
    assert set(RECIPES) <= names, set(RECIPES) - names  # no recipe for a class that went away
    for cls in COREDIS_ERRORS:  # none skipped: a class that needs a recipe fails here
        assert isinstance(build(cls), cls)


@pytest.mark.parametrize("cls", COREDIS_ERRORS, ids=lambda cls: cls.__name__)
def test_every_coredis_exception_becomes_queue_unavailable(cls: type[BaseException]):
    original = build(cls)
    with pytest.raises(QueueUnavailable) as caught:
        with redis_errors("xadd"):
            raise original
    assert caught.value.__cause__ is original
    assert str(caught.value) == f"xadd failed: {cls.__name__}"
    assert caught.value.retryable


@pytest.mark.parametrize(
    "original",
    [ConnectionError("reset"), TimeoutError("stream timeout"), OSError(113, "no route")],
    ids=lambda exc: type(exc).__name__,
)
def test_builtin_socket_errors_become_queue_unavailable(original: OSError):
    assert isinstance(original, REDIS_ERRORS)
    with pytest.raises(QueueUnavailable) as caught:
        with redis_errors("Redis ping"):
            raise original
    assert caught.value.__cause__ is original
    assert str(caught.value) == f"Redis ping failed: {type(original).__name__}"


def test_detail_puts_the_exception_text_in_the_message():
    original = coredis.exceptions.ResponseError("WRONGTYPE not a stream")
    with pytest.raises(QueueUnavailable) as caught:
        with redis_errors("cannot create consumer group", detail=True):
            raise original
    assert str(caught.value) == "cannot create consumer group: WRONGTYPE not a stream"
    assert caught.value.__cause__ is original


def test_other_errors_pass_unchanged():
    original = ValueError("not Redis")
    with pytest.raises(ValueError) as caught:
        with redis_errors("xadd"):
            raise original
    assert caught.value is original
    assert caught.value.__cause__ is None


async def test_around_awaits_and_never_catches_cancellation():
    with trio.fail_after(5):
        with pytest.raises(QueueUnavailable):
            with redis_errors("xread"):
                await trio.lowlevel.checkpoint()
                raise coredis.exceptions.ConnectionError("gone")
        with trio.CancelScope() as scope:
            with redis_errors("xread"):
                scope.cancel()
                await trio.lowlevel.checkpoint()  # raises trio.Cancelled, which must go on
            pytest.fail("the cancellation was swallowed")
        assert scope.cancelled_caught
