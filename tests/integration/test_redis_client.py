"""protocols/redis/client.py and scripts.py on the real embedded Valkey: what leaves an
``open_client`` block (the caller's own errors unchanged, Redis' as ``QueueUnavailable``), and
every Lua script compiles."""

from __future__ import annotations

import coredis.exceptions
import pytest
import trio

from protocols.errors import QueueUnavailable
from protocols.redis import scripts
from protocols.redis.client import open_client

LIMIT_S = 10


async def test_an_oserror_of_the_callers_code_leaves_the_block_unchanged(redis_url):
    # e.g. EADDRINUSE from the HTTP front, which runs inside such a block
    in_use = OSError(98, "Address already in use")
    with trio.fail_after(LIMIT_S), pytest.raises(OSError) as caught:
        async with open_client(redis_url, stream_timeout=5) as client:
            await client.ping()
            raise in_use
    assert caught.value is in_use


async def test_the_callers_errors_leave_as_themselves_even_from_a_nursery(redis_url):
    refused = ConnectionRefusedError(111, "Connection refused")  # not Redis': another server

    async def serve() -> None:
        raise refused

    with trio.fail_after(LIMIT_S), pytest.raises(ConnectionRefusedError) as caught:
        async with open_client(redis_url, stream_timeout=5), trio.open_nursery() as nursery:
            nursery.start_soon(serve)
    assert caught.value is refused

    typed = QueueUnavailable("the producer stopped")
    with trio.fail_after(LIMIT_S), pytest.raises(QueueUnavailable) as unavailable:
        async with open_client(redis_url, stream_timeout=5):
            raise typed
    assert unavailable.value is typed


async def test_a_redis_error_in_the_block_leaves_as_queue_unavailable(redis_url):
    with trio.fail_after(LIMIT_S), pytest.raises(QueueUnavailable) as caught:
        async with open_client(redis_url, stream_timeout=5) as client:
            # no such stream, no MKSTREAM: the server answers with an error
            await client.xgroup_create("chorus-test:no-such-stream", "g", "0")
    assert isinstance(caught.value.__cause__, coredis.exceptions.ResponseError)
    assert str(caught.value) == "Redis connection failed: ResponseError"


async def test_no_server_leaves_as_queue_unavailable():
    with trio.fail_after(LIMIT_S), pytest.raises(QueueUnavailable) as caught:
        async with open_client("redis://127.0.0.1:1", stream_timeout=1) as client:
            await client.ping()
    assert isinstance(caught.value.__cause__, coredis.exceptions.ConnectionError)


async def test_every_lua_script_compiles(redis_url):
    with trio.fail_after(LIMIT_S):
        async with open_client(redis_url, stream_timeout=5) as client:
            for script in scripts.ALL:
                await client.script_load(script.source)  # a syntax error raises here
