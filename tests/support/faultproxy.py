"""FaultProxy: a small trio TCP proxy for network-fault tests (instead of toxiproxy).

Listens on 127.0.0.1 (a free port) and forwards each connection to ``target``: ``(host, port)``
or the path of a Unix socket (the embedded Postgres listens on a Unix socket only; the service
then reaches it over TCP through the proxy, as it would a remote server).

- ``reset_all()``: abort every open connection (RST on the client side);
- ``set_blackhole(True)``: keep accepting, but forward and answer nothing; bytes already read
  are held (like TCP retransmitting through a partition) and flow again after
  ``set_blackhole(False)``;
- ``latency``: seconds added before each forwarded chunk.

Start it with ``port = await nursery.start(proxy.run)``.
"""

from __future__ import annotations

import socket
import struct
from functools import partial

import trio

_LINGER_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


class FaultProxy:
    def __init__(self, target: tuple[str, int] | str) -> None:
        self.target = target
        self.latency = 0.0
        self.accepted = 0  # connections accepted so far
        self._healed = trio.Event()
        self._healed.set()
        self._scopes: set[trio.CancelScope] = set()

    @property
    def connections(self) -> int:
        return len(self._scopes)

    def set_blackhole(self, on: bool) -> None:
        if on and self._healed.is_set():
            self._healed = trio.Event()
        elif not on:
            self._healed.set()

    def reset_all(self) -> None:
        for scope in list(self._scopes):
            scope.cancel()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(trio.serve_listeners, self._serve, listeners))
            task_status.started(port)

    async def _connect(self) -> trio.abc.Stream:
        if isinstance(self.target, str):
            return await trio.open_unix_socket(self.target)
        return await trio.open_tcp_stream(*self.target)

    async def _serve(self, client: trio.SocketStream) -> None:
        self.accepted += 1
        scope = trio.CancelScope()
        self._scopes.add(scope)
        try:
            with scope:
                await self._healed.wait()  # a blackhole accepts but never connects through
                async with await self._connect() as server, trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, client, server, nursery.cancel_scope)
                    nursery.start_soon(self._pump, server, client, nursery.cancel_scope)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the target refused or a side went away: drop this connection
        finally:
            self._scopes.discard(scope)
            if scope.cancel_called:  # reset_all: abort instead of a polite FIN
                client.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
            client.socket.close()

    async def _pump(
        self, source: trio.abc.Stream, sink: trio.abc.Stream, done: trio.CancelScope
    ) -> None:
        # A side that resets or closes (the service aborting a connection while Redis is
        # "away", say) ends this connection, never the proxy: the error is caught here, where
        # it happens, because out of the nursery it would come wrapped in an ExceptionGroup.
        try:
            while data := await source.receive_some(65536):
                await self._healed.wait()
                if self.latency:
                    await trio.sleep(self.latency)
                await sink.send_all(data)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        done.cancel()  # one side closed: close both
