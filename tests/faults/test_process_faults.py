"""Process faults: real signals to a real ``run.py`` process (fake provider, short timings).

- SIGKILL with jobs in flight, restarted under the same consumer name with a long lease: its own
  pending entries are taken back at start, so everything finishes long before the lease.
- SIGKILL, never restarted: another worker (another consumer name) reclaims the abandoned
  entries once their lease has expired, and finishes them.
- SIGTERM with jobs running: exit 0 within the grace period, running jobs finish and are acked,
  unstarted entries stay in the stream; the next run finishes them, and no job runs twice.
- Giving up: Redis unreachable at start ends the process with exit code 1 and a "giving up"
  line, never a hang; Redis going away later is an outage, waited out (not ready meanwhile).

Each test ends with the total-queue check and counts audio rows against jobs.
"""

from __future__ import annotations

import signal
import time

import trio

from protocols.redis.keys import Keys
from protocols.redis.queue import open_queue
from protocols.settings import Settings
from tests.support.faultproxy import FaultProxy
from tests.support.harness import total_queue_check
from tests.support.procs import (
    ChorusProcess,
    audio_rows,
    chorus_process,
    client,
    eventually,
    free_port,
    job_rows,
    sql,
    submit_all,
    unique_prefix,
    wait_all_terminal,
    wait_for_counts,
)

JOBS = 40
CONCURRENCY = 3  # run.py's default: three TTSActors


async def _queue_figures(redis_url: str, prefix: str) -> tuple[int, int, int]:
    """(pending entries, entries in the stream, entries pending for worker-a)."""
    async with open_queue(redis_url, Keys(prefix), stream_timeout=5) as queue:
        return (
            await queue.pending_count(),
            await queue.backlog(),
            len(await queue.own_pending("worker-a", 1000)),
        )


async def _drain_and_stop(proc: ChorusProcess, redis_url: str, prefix: str) -> None:
    """Wait until every entry is acked (a job is terminal in Postgres a moment before its ack
    reaches Redis), then stop the process with SIGTERM: it must exit 0."""

    async def drained() -> bool:
        pending, backlog, _ = await _queue_figures(redis_url, prefix)
        return pending == 0 and backlog == 0

    await eventually(drained, 10, "every entry acked", interval=0.05)
    proc.send_signal(signal.SIGTERM)
    assert await proc.wait_exit(10) == 0, proc.output


async def _start_and_sigkill(
    tmp_path, redis_url: str, database_url: str, key: str, prefix: str, env: dict[str, str]
) -> tuple[list[str], set[str], float]:
    """Run worker-a, submit JOBS jobs, SIGKILL it mid-way. Returns (job ids, ids running at the
    kill, wall-clock time of the kill)."""
    async with chorus_process(
        data_dir=tmp_path, redis_url=redis_url, database_url=database_url,
        consumer="worker-a", prefix=prefix, env=env,
    ) as first:
        async with client(first.base_url, key) as http:
            ids = await submit_all(http, [f"process fault line {i}" for i in range(JOBS)])
        await wait_for_counts(
            database_url, lambda c: c.get("succeeded", 0) >= 6 and c.get("running", 0) >= 2,
            20, "some jobs done and others running",
        )
        first.kill()
        killed_at = time.time()
        assert await first.wait_exit(5) == -signal.SIGKILL
    rows = await job_rows(database_url)
    running = {i for i, (status, _) in rows.items() if status == "running"}
    assert running, "no job was running when the process was killed"
    assert sum(1 for s, _ in rows.values() if s == "succeeded") < JOBS
    return ids, running, killed_at


async def _assert_exactly_once_effect(
    database_url: str, ids: list[str], running_at_kill: set[str]
) -> None:
    """Every job succeeded; only the jobs cut off by the kill were started a second time."""
    rows = await job_rows(database_url)
    assert set(rows) == set(ids)
    assert {s for s, _ in rows.values()} == {"succeeded"}, rows
    twice = {i for i, (_, attempts) in rows.items() if attempts == 2}
    assert twice == running_at_kill, (twice, running_at_kill)
    assert all(attempts in (1, 2) for _, attempts in rows.values())
    audio = await audio_rows(database_url)
    assert audio == len(ids), f"{audio} audio rows for {len(ids)} jobs (distinct texts)"
    distinct = await sql(database_url, "SELECT count(DISTINCT audio_id) FROM jobs")
    assert int(distinct[0][0]) == len(ids)


async def test_sigkill_then_same_consumer_recovers_own_pending_before_the_lease(
    redis_url, database_url, store, tmp_path
):
    lease_s = 60.0
    prefix = unique_prefix()
    _, key = await store.create_user("sigkill-same")
    env = {"CHORUS_LEASE_S": str(lease_s), "CHORUS_FAKE_LATENCY_S": "0.15"}
    with trio.fail_after(60):
        ids, running, _ = await _start_and_sigkill(
            tmp_path, redis_url, database_url, key, prefix, env
        )
        pending, _, own = await _queue_figures(redis_url, prefix)
        assert own >= len(running), (pending, own, running)

        started = time.monotonic()
        async with chorus_process(
            data_dir=tmp_path, redis_url=redis_url, database_url=database_url,
            consumer="worker-a", prefix=prefix, env=env,
        ) as second:
            await wait_all_terminal(database_url, JOBS, timeout=20)
            elapsed = time.monotonic() - started
            await _drain_and_stop(second, redis_url, prefix)
    print(f"restart finished the rest ({len(running)} cut off, {pending} pending) in"
          f" {elapsed:.2f} s; lease {lease_s} s")
    assert elapsed < lease_s / 4, "own pending entries waited for the lease"
    await _assert_exactly_once_effect(database_url, ids, running)
    tally = await total_queue_check(store, redis_url, Settings(redis_prefix=prefix), ids)
    assert tally["succeeded"] == JOBS


async def test_sigkill_without_restart_other_worker_reclaims_after_the_lease(
    redis_url, database_url, store, tmp_path
):
    lease_s = 3.0
    prefix = unique_prefix()
    _, key = await store.create_user("sigkill-other")
    env = {
        "CHORUS_LEASE_S": str(lease_s), "CHORUS_RECLAIM_INTERVAL_S": "0.3",
        "CHORUS_FAKE_LATENCY_S": "0.15",
    }
    with trio.fail_after(60):
        ids, running, killed_at = await _start_and_sigkill(
            tmp_path, redis_url, database_url, key, prefix, env
        )
        pending, _, own = await _queue_figures(redis_url, prefix)
        assert own >= len(running), (pending, own, running)

        async with chorus_process(
            data_dir=tmp_path, redis_url=redis_url, database_url=database_url,
            consumer="worker-b", prefix=prefix, env=env,
        ) as other:
            await wait_all_terminal(database_url, JOBS, timeout=lease_s + 15)
            done_at = time.time()
            await _drain_and_stop(other, redis_url, prefix)

    finished = {
        r[0]: float(r[1])
        for r in await sql(database_url, "SELECT id, extract(epoch FROM finished_at) FROM jobs")
    }
    reclaimed_after = min(finished[i] for i in running) - killed_at
    print(f"{len(running)} entries of worker-a reclaimed by worker-b {reclaimed_after:.2f} s"
          f" after the kill (lease {lease_s} s); all done {done_at - killed_at:.2f} s after it")
    # a running entry's idle time restarts at each renewal (every lease/3): it can be taken
    # no earlier than lease - lease/3 after the kill
    assert reclaimed_after >= lease_s * 2 / 3 - 0.5, "an entry was stolen before its lease ended"
    assert done_at - killed_at < lease_s + 10
    await _assert_exactly_once_effect(database_url, ids, running)
    tally = await total_queue_check(store, redis_url, Settings(redis_prefix=prefix), ids)
    assert tally["succeeded"] == JOBS


async def test_sigterm_finishes_running_jobs_and_leaves_the_rest_queued(
    redis_url, database_url, store, tmp_path
):
    grace_s, jobs = 5.0, 15
    prefix = unique_prefix()
    _, key = await store.create_user("sigterm")
    env = {
        "CHORUS_LEASE_S": "30", "CHORUS_SHUTDOWN_GRACE_S": str(grace_s),
        "CHORUS_FAKE_LATENCY_S": "1.0",
    }
    with trio.fail_after(60):
        async with chorus_process(
            data_dir=tmp_path, redis_url=redis_url, database_url=database_url,
            consumer="worker-a", prefix=prefix, env=env,
        ) as first:
            async with client(first.base_url, key) as http:
                ids = await submit_all(http, [f"sigterm line {i}" for i in range(jobs)])
            await wait_for_counts(
                database_url, lambda c: c.get("running", 0) == CONCURRENCY, 10,
                "every actor busy",
            )
            running = {i for i, (s, _) in (await job_rows(database_url)).items() if s == "running"}
            signalled = time.monotonic()
            first.send_signal(signal.SIGTERM)
            rc = await first.wait_exit(grace_s + 10)
            stopped_in = time.monotonic() - signalled
            await first.wait_for_line("supervisor shutdown", 5)
        assert rc == 0, first.output
        assert stopped_in < grace_s, f"took {stopped_in:.2f} s to stop (grace {grace_s} s)"

        rows = await job_rows(database_url)
        statuses = {s for s, _ in rows.values()}
        assert statuses <= {"succeeded", "queued"}, rows  # nothing left half-done
        assert all(rows[i][0] == "succeeded" for i in running), "a running job was cut off"
        queued = [i for i, (s, _) in rows.items() if s == "queued"]
        assert queued, "every job finished before the signal: nothing left for the next run"
        assert all(rows[i][1] == 0 for i in queued), "a queued job had been started"
        pending, backlog, _ = await _queue_figures(redis_url, prefix)
        # the unstarted entries stay in the stream; finished ones were acked (and deleted)
        assert backlog == len(queued), (backlog, len(queued))
        assert pending <= CONCURRENCY, pending  # at most read-but-unstarted, released
        left_after_term = len(queued)

        started = time.monotonic()
        async with chorus_process(
            data_dir=tmp_path, redis_url=redis_url, database_url=database_url,
            consumer="worker-a", prefix=prefix, env=env,
        ) as second:
            await wait_all_terminal(database_url, jobs, timeout=20)
            rest_in = time.monotonic() - started
            await _drain_and_stop(second, redis_url, prefix)
    print(f"SIGTERM: exit 0 in {stopped_in:.2f} s (grace {grace_s} s), {len(running)} running"
          f" finished, {left_after_term} left queued ({pending} pending); the next run finished"
          f" them in {rest_in:.2f} s")
    await _assert_exactly_once_effect(database_url, ids, set())
    tally = await total_queue_check(store, redis_url, Settings(redis_prefix=prefix), ids)
    assert tally["succeeded"] == jobs


GIVE_UP_ENV = {"CHORUS_RESTART_INTENSITY": "2", "CHORUS_RESTART_PERIOD_S": "30"}


async def test_redis_unreachable_at_start_exits_1(database_url, store, tmp_path):
    prefix = unique_prefix()
    closed = f"redis://127.0.0.1:{free_port()}"  # nobody listens there
    with trio.fail_after(30):
        async with chorus_process(
            data_dir=tmp_path, redis_url=closed, database_url=database_url,
            consumer="worker-a", prefix=prefix, env=GIVE_UP_ENV, ready=None,
        ) as proc:
            rc = await proc.wait_exit(20)
            line = await proc.wait_for_line("giving up", 5)
    assert rc == 1, proc.output
    assert "stream-reader" in line, line
    assert proc.find("listening on") is None  # the HTTP front never opened
    print(f"exit {rc}: {line}")


async def test_redis_outage_is_waited_out_then_serve_recovers(
    redis_url, valkey_server, database_url, store, tmp_path
):
    # Redis away for 15 s (resets, then every connection hangs), far past the restart
    # intensity (2 within 30 s) that used to end the process after ~9 s: serve stays up, not
    # ready (naming redis), submits 503 with Retry-After; then it recovers by itself.
    # (A crash loop that is not an outage still gives up: test_actor_faults.py)
    prefix = unique_prefix()
    _, key = await store.create_user("redis-outage")
    proxy = FaultProxy(("127.0.0.1", valkey_server.port))
    env = {**GIVE_UP_ENV, "CHORUS_OUTAGE_BACKOFF_S": "1"}
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            proxy_port = await nursery.start(proxy.run)
            async with chorus_process(
                data_dir=tmp_path, redis_url=f"redis://127.0.0.1:{proxy_port}",
                database_url=database_url, consumer="worker-a", prefix=prefix, env=env,
            ) as proc, client(proc.base_url, key) as http:
                await eventually(lambda: proxy.connections >= 1, 10, "the reader connected")
                proxy.set_blackhole(True)
                proxy.reset_all()
                gone = time.monotonic()

                async def not_ready() -> bool:
                    r = await http.get("/readyz")
                    return r.status_code == 503 and r.json()["checks"].get("redis") is False

                await eventually(not_ready, 15, "/readyz 503 naming redis", 0.1)
                r = await http.post("/v1/jobs", json={"text": "while redis is away"})
                assert r.status_code == 503, r.text
                assert r.headers.get("Retry-After")
                await trio.sleep(max(0.0, 15 - (time.monotonic() - gone)))
                assert proc.returncode is None, proc.output
                proxy.set_blackhole(False)
                back = time.monotonic()

                async def ready() -> bool:
                    return (await http.get("/readyz")).status_code == 200

                await eventually(ready, 30, "ready again", 0.1)
                recovered_in = time.monotonic() - back
                ids = await submit_all(http, [f"after the redis outage {i}" for i in range(5)])
                await wait_all_terminal(database_url, len(ids), timeout=30)
                assert proc.returncode is None and proc.find("giving up") is None
            nursery.cancel_scope.cancel()
    outages = [x for x in proc.lines if "supervisor outage" in x]
    print(f"ready {recovered_in:.2f} s after Redis came back; {len(outages)} outage restarts")
    assert outages  # the children that need Redis waited it out by restarting
    rows = await job_rows(database_url)
    assert {s for s, _ in rows.values()} == {"succeeded"}, rows
