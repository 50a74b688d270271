"""The fault tests' TCP proxy survives a side that resets its connection.

A service under test aborts connections all the time (that is what the fault tests provoke);
the proxy must drop that one connection and go on serving, or the test fails for the proxy's
sake instead of the service's (it did once, in CI: a reset raised out of the proxy's nursery).
"""

from __future__ import annotations

import socket
import struct

import trio

from tests.support.faultproxy import FaultProxy

_RST = struct.pack("ii", 1, 0)


async def _resetting_echo(stream: trio.SocketStream) -> None:
    """Echo the first chunk, then abort the connection with an RST."""
    data = await stream.receive_some(1024)
    await stream.send_all(data)
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
    stream.socket.close()


async def test_a_reset_from_the_target_ends_one_connection_not_the_proxy():
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            target_port = listeners[0].socket.getsockname()[1]
            await nursery.start(trio.serve_listeners, _resetting_echo, listeners)
            proxy = FaultProxy(("127.0.0.1", target_port))
            port = await nursery.start(proxy.run)
            for attempt in range(3):  # each connection is reset; the proxy keeps serving
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                await stream.send_all(b"hello %d" % attempt)
                assert await stream.receive_some(1024) == b"hello %d" % attempt
                try:
                    rest = await stream.receive_some(1024)
                except trio.BrokenResourceError:
                    rest = b""
                assert rest == b""  # the proxy closed (or reset) our side too
                await stream.aclose()
            assert proxy.accepted == 3
            nursery.cancel_scope.cancel()
