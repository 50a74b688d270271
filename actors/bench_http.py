"""``run.py bench`` workload ``http_front``: the HTTP front's own speed, beside its framework's.

Measured through real hypercorn servers on 127.0.0.1 by ``actors/bench_load.py`` (its own
process, raw keep-alive sockets), at 32 connections and at one:

- ``bare``: a quart-trio app with one trivial ``POST`` route, served by hypercorn the way Chorus
  is (same config): the stack's ceiling, measured in the same run as the rest, so figures taken
  on a busy machine can be read as ratios;
- ``hit``: ``POST /v1/jobs`` whose audio exists (a cache hit: a job created succeeded);
- ``new``: ``POST /v1/jobs`` with a new text each time (a row in Postgres + an entry in Redis);
- ``quota``: the same for a user with a monthly quota (checked under the owner's lock);
- ``get``: ``GET /v1/jobs/{id}``.

The Chorus figures are from an api-role Service (no workers: new jobs stay queued); the cached
clip is made first by a serve-role Service on the same store and data dir.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil
import trio
from hypercorn.config import Config
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app
from quart import Response
from quart_trio import QuartTrio

from actors.service import Role
from protocols.messages import JobRequest

CONNECTIONS = (32, 1)
ONE_CONN_SHARE = 6  # at one connection, n / 6 requests (the same order of seconds)
KINDS = ("bare", "hit", "new", "quota", "get")
#: (kind, connections) -> (figure, target, passes)
TARGETS: dict[tuple[str, int], tuple[str, str, Callable[[dict[str, Any]], bool]]] = {
    ("hit", 32): ("requests_per_s", ">= 1000", lambda r: r["requests_per_s"] >= 1000),
    ("hit", 1): ("p50_ms", "<= 1.5", lambda r: r["p50_ms"] <= 1.5),
    ("new", 32): ("requests_per_s", ">= 800", lambda r: r["requests_per_s"] >= 800),
    ("get", 32): ("requests_per_s", ">= 1500", lambda r: r["requests_per_s"] >= 1500),
}
ROOT = Path(__file__).resolve().parent.parent


def bare_app() -> QuartTrio:
    app = QuartTrio("bench-bare")

    @app.post("/bare")
    async def bare() -> Response:
        return Response(b'{"ok":true}', status=200, content_type="application/json")

    return app


async def load(port: int, connections: int, requests: int, method: str, path: str,
               headers: dict[str, str], body: str = "", first: int = 0) -> dict[str, Any]:
    """One measurement by ``actors.bench_load`` in a child process."""
    spec = {"host": "127.0.0.1", "port": port, "connections": connections,
            "requests": requests, "method": method, "path": path, "body": body,
            "headers": {"Content-Type": "application/json", **headers}, "first": first,
            "warmup": 3}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cpu, servers = time.process_time(), _servers_cpu()
    done = await trio.run_process([sys.executable, "-m", "actors.bench_load", json.dumps(spec)],
                                  capture_stdout=True, cwd=str(ROOT), env=env)
    out = json.loads(done.stdout)
    out["cpu_ms_per_req"] = (time.process_time() - cpu) * 1000 / out["requests"]
    out["db_cpu_ms_per_req"] = (_servers_cpu() - servers) * 1000 / out["requests"]
    return out


def _servers_cpu() -> float:
    """CPU seconds used so far by the embedded Postgres and Valkey (this process' children)."""
    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            if child.name().startswith(("postgres", "valkey")):
                t = child.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            continue  # a backend that just ended
    return total


async def _succeeded(b: Any, job_id: str, limit_s: float) -> None:
    with trio.fail_after(limit_s):
        while True:  # polled: the row is the truth
            job = await b.store.get_job(job_id)
            if job is not None and job.status.terminal:
                break
            await trio.sleep(0.01)
    if job.status.value != "succeeded":
        raise RuntimeError(f"the bench's seed job ended {job.status.value}")


async def http_front(b: Any, n: int) -> dict[str, Any]:
    """``b``: the ``actors.bench.Bench`` (its store, users and services); ``n`` requests per
    measurement at 32 connections."""
    user, key = await b.user("front")
    auth = {"Authorization": f"Bearer {key}"}
    limited, limited_key = await b.user("front-quota")  # a monthly quota it never reaches
    await b.store.set_quota(limited.name, 10**12)
    quota_auth = {"Authorization": f"Bearer {limited_key}"}
    text = f"front {b.run_id} cached"
    async with b.serving("front-seed", Role.serve) as svc:  # make the clip a hit will find
        seed, _ = await svc.intake.submit(JobRequest(text=text), user)
        await _succeeded(b, seed.id, 60)
    out: dict[str, Any] = {"requests": n}
    async with trio.open_nursery() as nursery, b.serving("front", Role.api) as svc:
        stop = trio.Event()
        bare_port = await _start_bare(nursery, stop)
        port = int(svc.http_binds[0].rsplit(":", 1)[1])
        runs: dict[str, Callable[[int, int, int], Awaitable[dict[str, Any]]]] = {
            "bare": lambda c, k, first: load(bare_port, c, k, "POST", "/bare", {}, "{}"),
            "hit": lambda c, k, first: load(port, c, k, "POST", "/v1/jobs", auth,
                                            json.dumps({"text": text})),
            "new": lambda c, k, first: load(
                port, c, k, "POST", "/v1/jobs", auth,
                '{"text": "front ' + b.run_id + ' new {n}"}', first),
            "quota": lambda c, k, first: load(
                port, c, k, "POST", "/v1/jobs", quota_auth,
                '{"text": "front ' + b.run_id + ' quota {n}"}', first),
            "get": lambda c, k, first: load(port, c, k, "GET", f"/v1/jobs/{seed.id}", auth),
        }
        first = 0
        for conns in CONNECTIONS:
            count = n if conns > 1 else max(20, n // ONE_CONN_SHARE)
            bares = []
            for kind in KINDS[1:]:  # the ceiling just before each: load on the machine varies
                bares.append(bare := await runs["bare"](conns, count // 2, 0))
                out[f"{kind}_{conns}"] = m = await runs[kind](conns, count, first)
                m["of_bare"] = m["requests_per_s"] / bare["requests_per_s"]
                first += count + conns * 10
            out[f"bare_{conns}"] = max(bares, key=lambda r: r["requests_per_s"])
        stop.set()
    return out


async def _start_bare(nursery: trio.Nursery, stop: trio.Event) -> int:
    """Serve the bare app until ``stop``; its port once it listens."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.keep_alive_timeout = 2.0  # as web.app.hypercorn_config
    config.include_server_header = False
    sockets = config.create_sockets()
    for sock in sockets.insecure_sockets:
        sock.listen(config.backlog)

    async def serve(*, task_status: trio.TaskStatus[None]) -> None:
        try:
            await worker_serve(wrap_app(bare_app(), config.wsgi_max_body_size, None), config,
                               sockets=sockets, shutdown_trigger=stop.wait,
                               task_status=task_status)
        finally:
            for sock in sockets.insecure_sockets:
                sock.close()

    await nursery.start(serve)
    return sockets.insecure_sockets[0].getsockname()[1]


def figures(r: dict[str, Any]) -> list[tuple[str, float, str, str, bool | None]]:
    """The table's rows: every kind at 32 connections and at one (req/s, p50, p95), with the
    issue's targets where it sets one."""
    rows: list[tuple[str, float, str, str, bool | None]] = []
    names = {"bare": "bare quart-trio POST", "hit": "POST /v1/jobs cache hit",
             "new": "POST /v1/jobs new job", "quota": "POST /v1/jobs new job, quota",
             "get": "GET /v1/jobs/{id}"}
    for conns in CONNECTIONS:
        for kind in KINDS:
            m = r[f"{kind}_{conns}"]
            what = f"{names[kind]}, {conns} conn"
            target = TARGETS.get((kind, conns))
            rows.append((f"{what} CPU/req", m["cpu_ms_per_req"], "ms", "-", None))
            for field, unit in (("requests_per_s", "req/s"), ("p50_ms", "ms"), ("p95_ms", "ms")):
                if target is not None and target[0] == field:
                    rows.append((f"{what} {field[:3]}", m[field], unit, target[1], target[2](m)))
                elif field == "requests_per_s" or conns == 1 or field == "p50_ms":
                    rows.append((f"{what} {field[:3]}", m[field], unit, "-", None))
            if kind != "bare":
                rows.append((f"{what}, of bare", m["of_bare"] * 100, "%", "-", None))
    return rows


NOTES = """\
http_front: hypercorn on 127.0.0.1, a keep-alive client in its own process (actors/bench_load.py:
  raw sockets, one prepared request per exchange); 32 then 1 connection(s). bare = a trivial
  quart-trio POST route served the same way, the stack's ceiling; "of bare" = req/s over that of
  bare measured just before it (bare's row: the best of those). CPU/req = CPU time of the bench
  process (the servers, not the client) per request. hit = POST /v1/jobs whose clip exists;
  new = a new text each time (api role: row + stream entry, nothing consumes); quota = the same
  for a user with a monthly quota (checked on each submit); get = GET /v1/jobs/{id}."""

