"""Postgres unreachable for a while (test plan §4, network faults): the service's store goes
through a FaultProxy that blackholes and then resets every connection while jobs flow.

The embedded Postgres listens on a Unix socket only; the proxy listens on TCP and forwards to that
socket, so the service reaches Postgres over TCP as it would a remote server.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Awaitable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import pytest
import trio

from protocols.errors import NotFound, StoreUnavailable
from protocols.messages import NewAudio
from protocols.postgres.store import PgStore
from protocols.providers.fake import FakeProvider
from tests.faults.test_actor_faults import (
    audio_rows,
    of,
    serving,
    wait_drained,
    wait_terminal,
    wait_until,
)
from tests.support.faultproxy import FaultProxy
from tests.support.harness import make_settings, total_queue_check

AUDIO = NewAudio(
    owner="nobody", cache_key="k", format="mp3", content_type="audio/mpeg", duration_s=0.1,
    size=1, path="k.mp3",
)
DB_TIMEOUT_S = 1.0  # each store call of the service gives up after this
OUTAGE_S = 2.0


def socket_and_proxied_url(database_url: str, proxy_port: int) -> tuple[str, str]:
    """The Unix socket of the embedded Postgres behind ``database_url`` (``?host=<dir>``), and
    the same database's URL through the proxy on 127.0.0.1."""
    parts = urlsplit(database_url)
    socket_dir = parse_qs(parts.query)["host"][0]
    socket_path = str(Path(socket_dir) / f".s.PGSQL.{parts.port or 5432}")
    user = parts.username or "postgres"
    proxied = urlunsplit(parts._replace(netloc=f"{user}@127.0.0.1:{proxy_port}", query=""))
    return socket_path, proxied


async def test_postgres_outage_answers_503_and_loses_nothing(
    redis_url, store, database_url, tmp_path
):
    settings = make_settings(tmp_path, db_timeout_s=DB_TIMEOUT_S, max_deliveries=50)
    provider = FakeProvider(latency_s=0.2)
    answers: list[tuple[int, str | None, float, str]] = []  # status, code, seconds, phase
    phase = "before"
    socket_path, _ = socket_and_proxied_url(database_url, 0)
    proxy = FaultProxy(socket_path)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(proxy.run)
            _, url = socket_and_proxied_url(database_url, port)
            async with (
                PgStore.open(url, timeout=DB_TIMEOUT_S) as proxied,
                serving(
                    redis_url=redis_url, store=proxied, settings=settings, provider=provider
                ) as svc,
            ):

                async def submitter(stop: trio.Event) -> None:
                    i = 0
                    while not stop.is_set():
                        started, at = trio.current_time(), phase
                        r = await svc.submit(f"a line while the database comes and goes {i}")
                        code = r.json().get("code") if r.status_code >= 400 else None
                        answers.append((r.status_code, code, trio.current_time() - started, at))
                        i += 1
                        await trio.sleep(0.05)  # pace: about 15 submissions a second

                def accepted_in(which: str) -> int:
                    return sum(1 for a in answers if a[3] == which and a[0] == 202)

                async with trio.open_nursery() as clients:
                    stop = trio.Event()
                    clients.start_soon(submitter, stop)

                    async def flowing() -> bool:
                        return accepted_in("before") >= 5

                    await wait_until(flowing, "jobs to flow", 10)
                    phase = "outage"
                    connected = proxy.accepted
                    proxy.set_blackhole(True)  # hangs every query, new connections included
                    await trio.sleep(OUTAGE_S)  # the outage lasts this long
                    proxy.reset_all()  # then the stuck connections break ...
                    proxy.set_blackhole(False)  # ... and the database is back
                    phase = "after"

                    async def recovered() -> bool:
                        return accepted_in("after") >= 5

                    await wait_until(recovered, "submissions to be accepted again", 15)
                    stop.set()
                jobs = await wait_terminal(store, svc.accepted, limit_s=20)
                await wait_drained(redis_url, settings)
                assert svc.service.storer is not None
                stored = svc.service.storer.statistics()
                # the Storer waits the outage out holding the audio (store_waits) where it
                # used to give the batch back (retried)
                retried = stored.retried + stored.store_waits + sum(
                    a.statistics().retried for a in svc.service.actors)
            nursery.cancel_scope.cancel()
        tally = await total_queue_check(store, redis_url, settings, svc.accepted)

    # every submission was answered, 202 or 503 store_unavailable, within its own deadline
    bound = 2 * settings.db_timeout_s + settings.submit_timeout_s + settings.redis_timeout_s
    assert {(status, code) for status, code, _, _ in answers} <= {
        (202, None), (503, "store_unavailable"),
    }, answers
    assert max(seconds for _, _, seconds, _ in answers) < bound + 1, answers
    assert any(status == 503 for status, _, _, at in answers if at == "outage"), answers
    # the workers hit the outage too, and waited or retried instead of failing or dead-lettering
    assert retried >= 1
    assert tally == {"succeeded": len(set(svc.accepted)), "dead": 0, "failed": 0}
    assert all(j.audio_id for j in jobs.values())
    assert await audio_rows(database_url) == len(jobs)  # one audio row per job, no duplicate
    assert of(svc.events, "crash") == [] and of(svc.events, "give_up") == [], [
        (e.child_id, e.error) for e in svc.events if e.kind == "crash"]
    assert proxy.accepted > connected  # the store's pool reconnected after the reset


async def test_store_survives_a_flapping_database(store, database_url):
    """Short outages under load: calls fail with StoreUnavailable in bounded time, never with
    anything else, and the store itself survives. (With a reset query on every release, asyncpg
    left the failure of a release cancelled by our timeout to a task nobody awaits, and
    trio-asyncio's default handler raised it out of the store's loop, ending the store.)"""
    timeout = 0.5
    outcomes: dict[str, int] = {"ok": 0, "unavailable": 0}
    slowest = [0.0]
    socket_path, _ = socket_and_proxied_url(database_url, 0)
    proxy = FaultProxy(socket_path)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(proxy.run)
            _, url = socket_and_proxied_url(database_url, port)
            async with PgStore.open(url, timeout=timeout) as proxied:

                async def timed(call: Awaitable[object]) -> object:
                    started = trio.current_time()
                    try:
                        return await call
                    finally:
                        slowest[0] = max(slowest[0], trio.current_time() - started)

                async def caller(stop: trio.Event) -> None:
                    while not stop.is_set():
                        try:  # a read, and a transaction (FOR UPDATE) on an unknown job
                            assert await timed(proxied.get_job("job_unknown")) is None
                            with pytest.raises(NotFound):
                                await timed(proxied.finish_job("job_unknown", AUDIO))
                            outcomes["ok"] += 1
                        except StoreUnavailable:
                            outcomes["unavailable"] += 1

                async with trio.open_nursery() as callers:
                    stop = trio.Event()
                    for _ in range(8):
                        callers.start_soon(caller, stop)
                    for i in range(4):
                        await trio.sleep(0.15 + i * 0.011)  # up (odd offsets: other phases)
                        proxy.set_blackhole(True)
                        await trio.sleep(0.8)  # down
                        proxy.set_blackhole(False)
                    stop.set()
                gc.collect()  # orphaned asyncio tasks report their errors when collected
                await trio.lowlevel.checkpoint()
                for _ in range(20):  # healed: every call answers again
                    assert await proxied.get_job("job_unknown") is None
            nursery.cancel_scope.cancel()

    assert outcomes["ok"] > 0 and outcomes["unavailable"] >= 8, outcomes
    # bounded, though not by the timeout alone: cancelling a query stuck on a dead connection
    # waits up to one more timeout inside asyncpg
    assert slowest[0] < 2 * timeout + 0.3, slowest


async def test_an_outage_logs_one_line_per_reconnect_attempt_without_tracebacks(
    database_url, caplog
):
    """The database's port closes under an open store: asyncpg's pool tries to restore its
    connection floor (at once, then after 1 s, 2 s, ...) and the calls made meanwhile fail. Each
    failed attempt is one WARNING line naming the error; no record carries a traceback. (asyncpg
    logged every attempt with ``exc_info``: a full traceback each time.)"""
    caplog.set_level(logging.WARNING)
    socket_path, _ = socket_and_proxied_url(database_url, 0)
    proxy, proxy_scope = FaultProxy(socket_path), trio.CancelScope()

    async def run_proxy(*, task_status=trio.TASK_STATUS_IGNORED) -> None:
        with proxy_scope:
            await proxy.run(task_status=task_status)

    def attempts() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "asyncpg.pool"]

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(run_proxy)
            _, url = socket_and_proxied_url(database_url, port)
            async with PgStore.open(url, timeout=DB_TIMEOUT_S) as proxied:
                await proxied.ping()
                proxy_scope.cancel()  # the port closes; the pool's connection is dropped

                async def closed() -> bool:
                    return proxy.connections == 0

                await wait_until(closed, "the proxy to close its connections", 5)
                for _ in range(3):  # calls during the outage reconnect, and fail
                    with pytest.raises(StoreUnavailable):
                        await proxied.get_job("job_unknown")

                async def two_attempts() -> bool:
                    return len(attempts()) >= 2

                await wait_until(two_attempts, "two failed reconnect attempts logged", 10)
            gc.collect()  # orphaned asyncio tasks report their errors when collected
            await trio.lowlevel.checkpoint()

    for record in caplog.records:
        text = logging.Formatter().format(record)
        assert record.exc_info is None and "Traceback" not in text, text
        assert "\n" not in text, text  # one line
    assert "Traceback" not in caplog.text
    assert all(r.levelno == logging.WARNING for r in attempts())
    assert all("ConnectionRefusedError" in r.getMessage() for r in attempts()), [
        r.getMessage() for r in attempts()]
