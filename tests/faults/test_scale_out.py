"""Scale-out: Chorus on several "hosts" sharing Redis, Postgres and an S3-compatible store.

One ``run.py api`` and two ``run.py worker`` processes, each with its own data dir (nothing on a
shared disk), the session's Valkey and the test's Postgres database, and their audio in a bucket
of a real S3-compatible server on 127.0.0.1 (moto over HTTP, in this test's process):

- audio made by a worker is served by the api process, which has no copy of its own, and a
  repeat of the request at the api is a cache hit on that same object;
- SIGKILL of one worker with jobs in flight loses nothing: the other worker takes over its
  entries once their lease has passed, every job succeeds exactly once, its audio is in the
  bucket and served by the api (total queue check).
"""

from __future__ import annotations

import signal
from pathlib import Path

import boto3
import pytest
import trio

from protocols.redis.keys import Keys
from protocols.redis.queue import open_queue
from protocols.settings import Settings
from tests.support.harness import total_queue_check
from tests.support.procs import (
    ChorusProcess,
    chorus_process,
    client,
    eventually,
    job_rows,
    sql,
    submit_all,
    unique_prefix,
    wait_all_terminal,
    wait_for_counts,
)
from tests.support.s3server import ACCESS_KEY, REGION, SECRET_KEY, S3Server, s3_env, s3_server

JOBS = 30


def bucket_objects(s3: S3Server, bucket: str) -> dict[str, bytes]:
    """Every object in the bucket, read by another S3 client (boto3, which moto brings)."""
    s3c = boto3.client("s3", endpoint_url=s3.url, region_name=REGION,
                       aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    listed = s3c.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: s3c.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def local_audio(*dirs: Path) -> list[Path]:
    return [p for d in dirs for p in d.rglob("*") if p.is_file() and "audio" in p.parts]


async def drained(redis_url: str, prefix: str) -> bool:
    async with open_queue(redis_url, Keys(prefix), stream_timeout=5) as queue:
        return await queue.pending_count() == 0 and await queue.backlog() == 0


async def own_pending(redis_url: str, prefix: str, consumer: str) -> int:
    async with open_queue(redis_url, Keys(prefix), stream_timeout=5) as queue:
        return len(await queue.own_pending(consumer, 1000))


async def stop(proc: ChorusProcess) -> None:
    proc.send_signal(signal.SIGTERM)
    assert await proc.wait_exit(20) == 0, proc.output


@pytest.mark.slow
async def test_two_workers_and_an_api_share_the_s3_store_and_a_killed_worker_loses_nothing(
    redis_url, database_url, store, tmp_path
):
    prefix = unique_prefix()
    _, key = await store.create_user("scale-out")
    _, other_key = await store.create_user("scale-out-other")
    dirs = {name: tmp_path / name for name in ("api", "a", "b")}
    with s3_server() as s3:
        bucket = await trio.to_thread.run_sync(s3.new_bucket)
        env = s3_env(s3, bucket, "chorus") | {
            "CHORUS_LEASE_S": "3", "CHORUS_RECLAIM_INTERVAL_S": "0.3",
            "CHORUS_FAKE_LATENCY_S": "0.3",
        }
        common = dict(redis_url=redis_url, database_url=database_url, prefix=prefix, env=env,
                      ready_timeout=60.0)
        with trio.fail_after(240):
            async with (
                chorus_process(data_dir=dirs["api"], consumer="api", role="api",
                               **common) as api,  # type: ignore[arg-type]
                chorus_process(data_dir=dirs["a"], consumer="worker-a", role="worker",
                               ready="started", **common) as worker_a,  # type: ignore[arg-type]
                chorus_process(data_dir=dirs["b"], consumer="worker-b", role="worker",
                               ready="started", **common) as worker_b,  # type: ignore[arg-type]
                client(api.base_url, key, timeout=30) as http,
                client(api.base_url, other_key, timeout=30) as other,
            ):
                # 1. made by a worker, served by the api from the shared store
                (first,) = await submit_all(http, ["Made on one host, served by another."])
                await wait_all_terminal(database_url, 1, timeout=60)
                job = (await http.get(f"/v1/jobs/{first}")).json()
                assert job["status"] == "succeeded", job
                objects = await trio.to_thread.run_sync(bucket_objects, s3, bucket)
                assert len(objects) == 1, objects
                (made,) = objects.values()
                served = await http.get(job["audio_url"])  # streamed from the bucket
                assert served.status_code == 200 and served.content == made
                assert served.headers["content-length"] == str(len(made))
                etag = served.headers["etag"]
                unchanged = await http.get(job["audio_url"], headers={"If-None-Match": etag})
                assert unchanged.status_code == 304 and unchanged.content == b""
                part = await http.get(job["audio_url"], headers={"Range": "bytes=2-9"})
                assert part.status_code == 206 and part.content == made[2:10]
                assert local_audio(*dirs.values()) == []  # no host keeps audio on its disk

                # another user's identical request, at the api: a cache hit on that object
                hit = await other.post(
                    "/v1/jobs", json={"text": "Made on one host, served by another."}
                )
                assert hit.status_code == 200 and hit.json()["cached"] is True, hit.text
                again = await other.get(hit.json()["audio_url"])
                assert again.status_code == 200 and again.content == made

                # 2. a worker killed with jobs in flight loses nothing
                ids = await submit_all(http, [f"Scale-out line {i}." for i in range(JOBS)])

                async def a_is_busy() -> bool:
                    counts = await job_rows(database_url)
                    done = sum(1 for s, _ in counts.values() if s == "succeeded")
                    return done >= 6 and await own_pending(redis_url, prefix, "worker-a") > 0

                await eventually(a_is_busy, 60, "worker-a holding entries", interval=0.05)
                worker_a.kill()
                assert await worker_a.wait_exit(10) == -signal.SIGKILL
                await wait_for_counts(
                    database_url, lambda c: c.get("succeeded", 0) >= JOBS + 2, 90,
                    "every job succeeded after the kill",
                )
                await eventually(lambda: drained(redis_url, prefix), 30, "every entry acked",
                                 interval=0.05)
                for job_id in ids:
                    job = (await http.get(f"/v1/jobs/{job_id}")).json()
                    audio = await http.get(job["audio_url"])
                    assert audio.status_code == 200 and audio.content, job
                assert worker_b.returncode is None
                await stop(worker_b)
                await stop(api)

        rows = await job_rows(database_url)
        assert {s for s, _ in rows.values()} == {"succeeded"}, rows
        tally = await total_queue_check(store, redis_url, Settings(redis_prefix=prefix),
                                        [first, *ids])
        assert tally["succeeded"] == JOBS + 1
        objects = await trio.to_thread.run_sync(bucket_objects, s3, bucket)
        paths = await sql(database_url, "SELECT count(DISTINCT path) FROM audio")
        assert len(objects) == int(paths[0][0]) == JOBS + 1
        assert all(key.startswith("chorus/") and data for key, data in objects.items())
        assert local_audio(*dirs.values()) == []
