"""``run.py bench`` workload ``compat``: a cached ``convert`` through the ElevenLabs-compatible
route, ``POST /v1/text-to-speech/<voice>``, over HTTP on 127.0.0.1.

One text is converted once (made by the fake provider), then ``n`` times more, one request at a
time: each is a cache hit (a succeeded job row, no provider call, no characters) answered with
the stored clip. Latency = the client's wall clock from sending the request to the last body
byte (httpx in the same process, keep-alive). Target p50 <= 3 ms. The yardstick: the bare
quart-trio ``POST`` of ``bench_http`` (the stack doing nothing) measured the same way in the
same loop, so the client's and the stack's own share can be told from Chorus's.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import trio

from actors import bench_http
from actors.bench_stats import percentile
from actors.service import Role

VOICE = "fake-en"
P50_TARGET_MS = 3.0
NOTES = """\
compat: POST /v1/text-to-speech/fake-en (ElevenLabs' route) with one text, made once, then sent
  again one request at a time: each repeat is a cache hit (a succeeded job, no provider call, the
  stored clip in the body); client wall clock per request, httpx in the same process. Each is
  followed by the same request through POST /v1/jobs (a cache hit answered 200 with the job's
  JSON): what the compat layer adds is the difference; and by a POST to the bare quart-trio app
  of http_front with the same body and client (the client's and the stack's own share)."""


async def cached_convert(b: Any, n: int) -> dict[str, Any]:
    """``b``: the ``actors.bench.Bench`` (user, serving)."""
    _, key = await b.user("compat")
    body = {"text": f"compat {b.run_id}: the cached convert."}
    async with (
        trio.open_nursery() as nursery,
        b.serving("compat", Role.serve) as svc,
        httpx.AsyncClient(base_url=svc.http_binds[0], timeout=30,
                          headers={"xi-api-key": key}) as client,
    ):
        stop = trio.Event()
        bare_url = f"http://127.0.0.1:{await bench_http._start_bare(nursery, stop)}/bare"
        path = f"/v1/text-to-speech/{VOICE}"
        first = await client.post(path, json=body)
        first.raise_for_status()
        calls = svc.provider.calls
        latencies: list[float] = []
        jobs: list[float] = []  # the same cache hit through POST /v1/jobs (JSON, no audio)
        bare: list[float] = []  # the bare stack, same client and body
        costs = set()
        for _ in range(n):
            t0 = time.perf_counter()
            r = await client.post(path, json=body)
            latencies.append((time.perf_counter() - t0) * 1000)
            r.raise_for_status()
            costs.add(r.headers["character-cost"])
            t0 = time.perf_counter()
            j = await client.post("/v1/jobs", json={**body, "voice_id": VOICE})
            jobs.append((time.perf_counter() - t0) * 1000)
            assert j.status_code == 200, j.text  # a cache hit
            t0 = time.perf_counter()
            (await client.post(bare_url, json=body)).raise_for_status()
            bare.append((time.perf_counter() - t0) * 1000)
        extra_calls = svc.provider.calls - calls
        stop.set()
    return {"requests": n, "p50_ms": percentile(latencies, 50),
            "p95_ms": percentile(latencies, 95), "provider_calls": extra_calls,
            "character_costs": sorted(costs), "jobs_p50_ms": percentile(jobs, 50),
            "bare_p50_ms": percentile(bare, 50)}


def figures(r: dict[str, Any] | None) -> list[tuple[str, float, str, str, bool | None]]:
    if r is None:
        return []
    cached = r["provider_calls"] == 0 and r["character_costs"] == ["0"]
    return [
        ("cached convert p50, POST /v1/text-to-speech", r["p50_ms"], "ms",
         f"<= {P50_TARGET_MS:g}", cached and r["p50_ms"] <= P50_TARGET_MS),
        ("cached convert p95", r["p95_ms"], "ms", "-", None),
        ("cached POST /v1/jobs p50 (same requests)", r["jobs_p50_ms"], "ms", "-", None),
        *([("bare quart-trio POST p50, same client", r["bare_p50_ms"], "ms", "-", None)]
          if "bare_p50_ms" in r else []),
    ]
