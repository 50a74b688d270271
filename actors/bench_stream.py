"""``run.py bench`` workload ``stream``: time to the first audio byte of a job followed as it is
made (``POST /v1/jobs`` with ``stream``, then ``GET /v1/jobs/{id}/stream``, over HTTP on
127.0.0.1), for a 200-character text, on the embedded engine (espeak-ng) and on the fake
provider (its configured latency subtracted: what Chorus adds). Every text is new (no cache
hit). Registered in ``actors/bench.py``; it imports nothing from there (``b`` is its ``Bench``).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import trio

from actors.bench_stats import percentile
from actors.service import Role
from protocols.messages import SynthesisRequest
from protocols.providers.espeak import EspeakProvider
from protocols.providers.fake import FakeProvider
from protocols.settings import Settings

TEXT = ("Once upon a time, in a small village by the sea, there lived a girl who loved to read."
        " Every evening she climbed the hill behind her house and watched the boats come home"
        " at dusk, number ")
FAKE_LATENCY_S = 0.2
FIRST_BYTE_TARGET_MS = 150.0
Figure = tuple[str, float, str, str, bool | None]


def _text(run_id: str, i: int) -> str:
    tail = f"{i} of run {run_id}."
    return (TEXT + tail).ljust(200, ".")[:200]


async def _first_bytes(b: Any, name: str, provider: Any, n: int) -> list[float]:
    """Seconds from the submit to the first audio byte, ``n`` times, one at a time."""
    settings = Settings(
        data_dir=str(b.data_dir), port=0, redis_prefix=f"bench-stream-{name}-{b.run_id}",
        consumer=f"bench-stream-{name}", concurrency=3, shutdown_grace_s=5.0,
    )
    _, key = await b.user(f"stream-{name}")
    service = b.build(settings, Role.serve, redis_url=b.redis_url, store=b.store,
                      provider=provider)
    waits: list[float] = []
    async with service.running(), httpx.AsyncClient(
        base_url=service.http_binds[0], headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as client:
        for i in range(n + 1):  # the first one warms up the path (not counted)
            t0 = time.perf_counter()
            r = await client.post("/v1/jobs", json={"text": _text(b.run_id, i), "stream": True})
            r.raise_for_status()
            async with client.stream("GET", f"/v1/jobs/{r.json()['id']}/stream") as live:
                live.raise_for_status()
                chunks = live.aiter_raw()
                await anext(chunks)
                if i:
                    waits.append(time.perf_counter() - t0)
                async for _ in chunks:
                    pass
    return waits


async def stream(b: Any, n: int) -> dict[str, Any]:
    espeak = EspeakProvider()
    await espeak.synthesize(SynthesisRequest(text="warm up", voice_id="en-us"))
    embedded = await _first_bytes(b, "embedded", espeak, n)
    fake = FakeProvider(0.0)
    await fake.synthesize(SynthesisRequest(text="warm-up", voice_id="fake-en"))
    fake.latency_s = FAKE_LATENCY_S
    faked = [w - FAKE_LATENCY_S for w in await _first_bytes(b, "fake", fake, n)]
    await trio.lowlevel.checkpoint()
    return {
        "runs": n, "characters": 200, "fake_latency_ms": FAKE_LATENCY_S * 1000,
        "embedded_first_byte_p50_ms": percentile(embedded, 50) * 1000,
        "embedded_first_byte_p99_ms": percentile(embedded, 99) * 1000,
        "fake_first_byte_p50_ms": percentile(faked, 50) * 1000,
        "fake_first_byte_p99_ms": percentile(faked, 99) * 1000,
    }


def stream_figures(r: dict[str, Any]) -> list[Figure]:
    p50 = r["embedded_first_byte_p50_ms"]
    return [
        ("stream: first byte, embedded, 200 chars, p50", p50, "ms",
         f"<= {FIRST_BYTE_TARGET_MS:.0f}", p50 <= FIRST_BYTE_TARGET_MS),
        ("stream: first byte, embedded, p99", r["embedded_first_byte_p99_ms"], "ms", "-", None),
        ("stream: first byte, fake - its latency, p50", r["fake_first_byte_p50_ms"], "ms", "-",
         None),
        ("stream: first byte, fake - its latency, p99", r["fake_first_byte_p99_ms"], "ms", "-",
         None),
    ]
