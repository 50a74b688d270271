"""A small HTTP/1.1 load client for ``run.py bench`` (workload ``http_front``), run as its own
process: ``python -m actors.bench_load '<spec json>'`` prints one JSON line of figures.

Its own process so the client's CPU is not the server's (the GIL, one trio loop), and raw
sockets with keep-alive rather than httpx: a request is one prepared ``bytes`` written and one
answer read (headers, then ``Content-Length`` bytes), so the client costs little next to the
server it measures. ``connections`` tasks each hold one connection; each sends ``warmup``
requests first (not counted), then all wait for each other and share the ``requests`` that are
counted. A body may hold ``{n}``, replaced by the request's number (distinct texts).
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from typing import Any

import trio

HEAD_END = b"\r\n\r\n"


class Connection:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream, self.buf = stream, bytearray()

    async def exchange(self, request: bytes) -> int:
        """Send one request; read its answer whole; its status code."""
        await self.stream.send_all(request)
        while (end := self.buf.find(HEAD_END)) < 0:
            await self._more()
        head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        need = end + 4 + length
        while len(self.buf) < need:
            await self._more()
        del self.buf[:need]
        return status

    async def _more(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buf += data


def request_bytes(spec: dict[str, Any], n: int) -> bytes:
    body = spec.get("body", "").replace("{n}", str(n)).encode()
    head = [f"{spec['method']} {spec['path']} HTTP/1.1", f"Host: {spec['host']}"]
    head += [f"{k}: {v}" for k, v in spec.get("headers", {}).items()]
    if body or spec["method"] in ("POST", "PUT"):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    conns, total, warmup = spec["connections"], spec["requests"], spec.get("warmup", 2)
    numbers = iter(range(spec.get("first", 0), spec.get("first", 0) + total))
    warm_numbers = iter(range(10**9, 10**9 + conns * warmup))
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    warmed, go = [0], trio.Event()
    clock: dict[str, float] = {}

    async def client() -> None:
        stream = await trio.open_tcp_stream(spec["host"], spec["port"])
        async with stream:
            conn = Connection(stream)
            for n in (next(warm_numbers) for _ in range(warmup)):
                await conn.exchange(request_bytes(spec, n))
            warmed[0] += 1
            if warmed[0] == conns:
                clock["start"] = time.perf_counter()
                go.set()
            await go.wait()
            for n in numbers:  # shared: each number is taken once
                req = request_bytes(spec, n)
                t = time.perf_counter()
                status = await conn.exchange(req)
                latencies.append(time.perf_counter() - t)
                statuses[status] += 1
        clock["end"] = max(clock.get("end", 0.0), time.perf_counter())

    with trio.fail_after(spec.get("limit_s", 300)):
        async with trio.open_nursery() as nursery:
            for _ in range(conns):
                nursery.start_soon(client)
    seconds = clock["end"] - clock["start"]
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))] * 1000

    return {"requests": len(latencies), "connections": conns, "seconds": seconds,
            "requests_per_s": len(latencies) / seconds, "p50_ms": pct(50), "p95_ms": pct(95),
            "p99_ms": pct(99), "statuses": {str(k): v for k, v in sorted(statuses.items())}}


if __name__ == "__main__":
    print(json.dumps(trio.run(run, json.loads(sys.argv[1]))))
