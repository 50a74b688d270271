"""Dependency outages are waited out, never fatal, and never kill a job (issue 13, items 1-2).

- Postgres away (a FaultProxy blackholes it) for far longer than the restart intensity allows
  crashes (intensity 2 within 30 s): ``/readyz`` answers 503 naming ``postgres``, submits 503
  with ``Retry-After``; once it is back the service recovers by itself, nothing is
  dead-lettered (max 2 deliveries), and audio paid for before the outage is stored, not made
  again (one provider call per text).
- The embedded Valkey under a real ``run.py serve`` is SIGKILLed: it is started again on the
  same port, jobs submitted before and after all finish, and the process never exits.

A real crash loop still gives up: ``tests/faults/test_actor_faults.py``
(``test_crash_loop_gives_up_and_loses_nothing``) and ``tests/unit/test_supervisor.py``.
Real clock, short timings; every wait has a deadline.
"""

from __future__ import annotations

import signal
import time

import psutil
import trio

from protocols.postgres.store import PgStore
from protocols.providers.fake import FakeProvider
from tests.faults.test_actor_faults import audio_rows, of, serving, wait_drained, wait_terminal
from tests.faults.test_store_faults import socket_and_proxied_url
from tests.support.faultproxy import FaultProxy
from tests.support.harness import make_settings, total_queue_check
from tests.support.procs import (
    chorus_process,
    client,
    eventually,
    submit_all,
    unique_prefix,
    wait_all_terminal,
)

DB_TIMEOUT_S = 0.5
OUTAGE_S = 12.0  # restart intensity 2 within 30 s: the old tree gave up within this


async def test_a_long_postgres_outage_is_waited_out_and_kills_no_job(
    redis_url, store, database_url, tmp_path
):
    settings = make_settings(
        tmp_path, db_timeout_s=DB_TIMEOUT_S, max_deliveries=2, restart_intensity=2,
        restart_period_s=30.0, outage_backoff_s=1.0,
    )
    provider = FakeProvider(latency_s=1.0)  # calls in flight when the database goes
    socket_path, _ = socket_and_proxied_url(database_url, 0)
    proxy = FaultProxy(socket_path)
    texts = [f"a line that outlives the database {i}" for i in range(6)]
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(proxy.run)
            _, url = socket_and_proxied_url(database_url, port)
            async with (
                PgStore.open(url, timeout=DB_TIMEOUT_S) as proxied,
                serving(
                    redis_url=redis_url, store=proxied, settings=settings, provider=provider
                ) as svc,
            ):
                for text in texts:
                    r = await svc.submit(text)
                    assert r.status_code == 202, r.text

                async def calling() -> bool:
                    return provider.active >= 1

                await eventually(calling, 10, "provider calls under way")
                proxy.set_blackhole(True)  # every query hangs, new connections too
                down = time.monotonic()
                # during the outage: not ready, naming the database; submits 503 Retry-After
                ready = await svc.client.get("/readyz")
                assert ready.status_code == 503, ready.text
                assert ready.json()["checks"] == {"redis": True, "postgres": False}
                r = await svc.submit("while the database is away")
                assert r.status_code == 503, r.text
                assert r.json()["code"] == "store_unavailable"
                assert r.headers.get("Retry-After")
                await trio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down)))
                # still serving, still not ready: the tree did not give up
                assert of(svc.events, "give_up") == []
                assert (await svc.client.get("/readyz")).status_code == 503
                proxy.reset_all()  # the stuck connections break ...
                proxy.set_blackhole(False)  # ... and the database is back

                async def ready_again() -> bool:
                    return (await svc.client.get("/readyz")).status_code == 200

                await eventually(ready_again, 20, "ready again after the outage", 0.1)
                r = await svc.submit("after the outage")
                assert r.status_code == 202, r.text
                texts.append("after the outage")
                jobs = await wait_terminal(store, svc.accepted, limit_s=40)
                await wait_drained(redis_url, settings)
                outages = len(of(svc.events, "outage"))
                stored_late = svc.service.storer.statistics().store_waits  # type: ignore[union-attr]
            nursery.cancel_scope.cancel()
        tally = await total_queue_check(store, redis_url, settings, svc.accepted)

    print(f"outage {OUTAGE_S} s: {outages} outage restarts, storer waited {stored_late} times,"
          f" {provider.calls} provider calls for {len(texts)} texts")
    assert of(svc.events, "give_up") == []
    assert tally == {"succeeded": len(texts), "dead": 0, "failed": 0}, tally
    assert {j.status.value for j in jobs.values()} == {"succeeded"}
    assert provider.calls == len(texts)  # audio paid for during the outage was kept
    assert await audio_rows(database_url) == len(texts)


def _valkey_of(data_dir) -> psutil.Process:  # type: ignore[no-untyped-def]
    vdir = (data_dir / "valkey").resolve()
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "valkey-server":
            try:
                if proc.cwd() == str(vdir) and proc.status() != psutil.STATUS_ZOMBIE:
                    return proc
            except psutil.Error:
                continue
    raise AssertionError(f"no valkey-server running in {vdir}")


async def test_a_killed_embedded_valkey_is_started_again_and_serve_carries_on(
    database_url, store, tmp_path
):
    prefix = unique_prefix()
    _, key = await store.create_user("valkey-kill")
    env = {"REDIS_URL": "", "CHORUS_RESTART_INTENSITY": "2", "CHORUS_RESTART_PERIOD_S": "30",
           "CHORUS_EMBEDDED_WATCH_S": "0.2", "CHORUS_OUTAGE_BACKOFF_S": "1"}
    with trio.fail_after(120):
        async with chorus_process(
            data_dir=tmp_path, redis_url="", database_url=database_url,
            consumer="worker-a", prefix=prefix, env=env,
        ) as proc:
            first = _valkey_of(tmp_path)
            port = (tmp_path / "valkey" / "port").read_text().strip()
            async with client(proc.base_url, key) as http:
                before = await submit_all(http, [f"before the kill {i}" for i in range(30)])
                # Valkey fsyncs its AOF every second: a kill loses at most the last second of
                # writes, so the kill comes once the submits are on disk (jobs still running)
                await trio.sleep(1.2)
                first.send_signal(signal.SIGKILL)
                await proc.wait_for_line("embedded redis is running again", 30)
                second = _valkey_of(tmp_path)
                assert second.pid != first.pid
                assert (tmp_path / "valkey" / "port").read_text().strip() == port

                async def ready() -> bool:
                    return (await http.get("/readyz")).status_code == 200

                await eventually(ready, 30, "ready again", 0.1)
                after = await submit_all(http, [f"after the kill {i}" for i in range(10)])
            # everything accepted after the restart finishes; the process never exited
            await wait_all_terminal(database_url, len(before) + len(after), timeout=60)
            assert proc.returncode is None, proc.output
            assert proc.find("giving up") is None
            print("\n".join(x for x in proc.lines if "embedded" in x or "supervisor" in x))
            waited = [x for x in proc.lines if "supervisor outage" in x]
            crashed = [x for x in proc.lines if "supervisor crash" in x]
            print(f"{len(waited)} outage restarts, {len(crashed)} crashes: {crashed}")
    rows = dict(await _statuses(database_url))
    assert all(rows[i] == "succeeded" for i in after), rows


async def _statuses(database_url: str) -> list[tuple[str, str]]:
    from tests.support.procs import sql

    return [(r[0], r[1]) for r in await sql(database_url, "SELECT id, status FROM jobs")]


async def test_a_killed_embedded_postgres_is_started_again_and_serve_carries_on(tmp_path):
    # both servers embedded, as a single-binary deploy runs: the postmaster is SIGKILLed
    # with jobs running; it is started again on the same socket and every job finishes
    env = {"REDIS_URL": "", "DATABASE_URL": "", "CHORUS_RESTART_INTENSITY": "2",
           "CHORUS_RESTART_PERIOD_S": "30", "CHORUS_EMBEDDED_WATCH_S": "0.2",
           "CHORUS_OUTAGE_BACKOFF_S": "1", "CHORUS_DB_TIMEOUT_S": "2"}
    with trio.fail_after(180):
        async with chorus_process(
            data_dir=tmp_path, redis_url="", database_url="", consumer="worker-a",
            prefix=unique_prefix(), env=env, ready_timeout=60,
        ) as proc:
            key = (tmp_path / "local-api-key").read_text().strip()
            pidfile = tmp_path / "pg" / "postmaster.pid"
            first = int(pidfile.read_text().splitlines()[0])
            async with client(proc.base_url, key) as http:
                texts = [f"before the postgres kill {i}" for i in range(20)]
                before = await submit_all(http, texts)
                psutil.Process(first).send_signal(signal.SIGKILL)
                await proc.wait_for_line("embedded postgres is running again", 60)
                assert int(pidfile.read_text().splitlines()[0]) != first

                async def ready() -> bool:
                    return (await http.get("/readyz")).status_code == 200

                await eventually(ready, 60, "ready again", 0.2)
                after = await submit_all(http, [f"after the postgres kill {i}" for i in range(5)])

                async def all_succeeded() -> bool:
                    for job_id in before + after:
                        r = await http.get(f"/v1/jobs/{job_id}")
                        if r.status_code != 200 or r.json()["status"] != "succeeded":
                            return False
                    return True

                await eventually(all_succeeded, 90, "every job succeeded", 0.5)
            assert proc.returncode is None, proc.output
            assert proc.find("giving up") is None
            print("\n".join(x for x in proc.lines if "embedded" in x or "supervisor" in x))
