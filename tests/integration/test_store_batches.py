"""The store's group commits on the real Postgres: concurrent cache hits inserted together,
concurrent job reads answered by one SELECT, each caller getting what a single call gives."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from protocols.embedded.servers import run_psql
from protocols.errors import IdempotencyConflict, QuotaExceeded
from protocols.messages import Job, JobStatus, NewAudio, NewJob
from protocols.postgres import jobs_sql
from protocols.postgres.store import PgStore

CAP_S = 20


def new_job(owner: str, job_id: str, *, key: str | None = None, request: str = "h1") -> NewJob:
    return NewJob(id=job_id, owner=owner, text="Hello there", voice_id="en-us", language="en",
                  output_format="mp3_44100_128", idempotency_key=key, request_hash=request,
                  cache_key="ck1")


async def made(store: PgStore, owner: str, job_id: str) -> Job:
    """A finished job of ``owner`` (its audio under cache key ck1)."""
    await store.create_job(new_job(owner, job_id))
    await store.start_job(job_id)
    return await store.finish_job(job_id, NewAudio(
        owner=owner, cache_key="ck1", format="mp3_44100_128", content_type="audio/mpeg",
        duration_s=1.0, size=10, path="ck/ck1.mp3", charge=11,
    ))


def spy(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """The batch sizes ``jobs_sql.<name>`` is called with."""
    sizes: list[int] = []
    real = getattr(jobs_sql, name)

    async def counting(conn: Any, items: list[Any]) -> Any:
        sizes.append(len(items))
        return await real(conn, items)

    monkeypatch.setattr(jobs_sql, name, counting)
    return sizes


async def test_concurrent_cache_hits_go_in_one_insert_keep_idempotency_and_charge_nothing(
    store: PgStore, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(CAP_S):
        alice, _ = await store.create_user("alice")
        done = await made(store, alice.id, "j0")
        clip = await store.find_audio(alice.id, "ck1")
        assert clip is not None and clip.id == done.audio_id
        row = f"SELECT xmin FROM audio WHERE id = '{clip.id}'"
        before = await trio.to_thread.run_sync(run_psql, database_url, row)
        sizes = spy(monkeypatch, "create_jobs")
        # 20 hits: keys k0..k9, each used twice; all at once
        asks = [new_job(alice.id, f"h{i}", key=f"k{i % 10}") for i in range(20)]
        answers: dict[int, tuple[Job, bool]] = {}

        async def hit(i: int) -> None:
            answers[i] = await store.create_job(asks[i], quota=0, cached=clip)

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(hit, i)

        assert max(sizes) > 1 and sum(sizes) == 20  # inserted together, not one by one
        by_key: dict[str, set[str]] = {}
        for i, (job, _) in answers.items():
            assert job.status is JobStatus.succeeded and job.cached
            assert job.audio_id == clip.id  # the owner's own row, as it is
            by_key.setdefault(asks[i].idempotency_key or "", set()).add(job.id)
        assert all(len(ids) == 1 for ids in by_key.values())  # one job per key
        assert sum(created for _, created in answers.values()) == 10
        assert (await store.usage(alice.id)).used == 11  # j0 only: hits are not charged
        # the clip's row was linked, not written: hits do not queue on its row lock
        assert await trio.to_thread.run_sync(run_psql, database_url, row) == before
        with pytest.raises(IdempotencyConflict):  # a key reused for another request
            await store.create_job(new_job(alice.id, "h99", key="k1", request="h2"),
                                   cached=clip)


async def test_concurrent_job_reads_share_one_select_and_keep_owners_apart(
    store: PgStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(CAP_S):
        alice, _ = await store.create_user("alice")
        bob, _ = await store.create_user("bob")
        for i in range(3):
            await store.create_job(new_job(alice.id, f"a{i}"))
        await store.create_job(new_job(bob.id, "b0"))
        sizes = spy(monkeypatch, "get_jobs")
        asks: list[tuple[str, str | None]] = [
            ("a0", alice.id), ("a1", alice.id), ("a2", None), ("b0", alice.id),  # not hers
            ("b0", bob.id), ("a1", bob.id), ("nope", alice.id), ("a0", alice.id)] * 3
        got: dict[int, Job | None] = {}

        async def read(i: int) -> None:
            got[i] = await store.get_job(*asks[i])

        async with trio.open_nursery() as nursery:
            for i in range(len(asks)):
                nursery.start_soon(read, i)

        assert sizes and max(sizes) > 1
        for i, (job_id, owner) in enumerate(asks):
            alone = await store.get_job(job_id, owner)  # a single call: the reference
            assert got[i] == alone
            assert (alone is None) == ((job_id, owner) in (("b0", alice.id), ("a1", bob.id))
                                       or job_id == "nope")


def spy_owner_batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sizes: list[int] = []
    real = jobs_sql.create_jobs_within_quota

    async def counting(conn: Any, owner: str, items: list[Any]) -> Any:
        sizes.append(len(items))
        return await real(conn, owner, items)

    monkeypatch.setattr(jobs_sql, "create_jobs_within_quota", counting)
    return sizes


async def test_concurrent_submits_within_a_quota_share_a_transaction_and_never_exceed_it(
    store: PgStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jobs of 11 characters against a quota of 100: nine fit, whatever the interleaving; a
    repeated key gets its one job; an earlier job's key is an idempotent repeat even at the
    limit; a key reused for another request is a conflict. Another owner is not affected."""
    with trio.fail_after(CAP_S):
        alice, _ = await store.create_user("alice")
        bob, _ = await store.create_user("bob")
        earlier, _ = await store.create_job(new_job(alice.id, "old", key="old"), quota=100)
        sizes = spy_owner_batches(monkeypatch)
        asks = [new_job(alice.id, f"a{i}", key=f"k{i % 12}") for i in range(16)]  # k0-k3 twice
        asks += [new_job(alice.id, "again", key="old")]  # a repeat of the earlier job
        asks += [new_job(bob.id, f"b{i}") for i in range(3)]
        answers: dict[int, tuple[Job, bool] | Exception] = {}

        async def submit(i: int) -> None:
            try:
                answers[i] = await store.create_job(asks[i], quota=100)
            except (QuotaExceeded, IdempotencyConflict) as exc:
                answers[i] = exc

        async with trio.open_nursery() as nursery:
            for i in range(len(asks)):
                nursery.start_soon(submit, i)

        assert sizes and max(sizes) > 1  # together, not one transaction each
        made = {job.id for a in answers.values() if isinstance(a, tuple)
                for job, created in [a] if created and job.owner == alice.id}
        assert len(made) == 8  # 100 // 11 = 9, one of them taken by the earlier job
        assert (await store.usage(alice.id)).reserved == 99
        by_key: dict[str, set[str]] = {}
        for i, a in answers.items():
            if isinstance(a, tuple) and asks[i].owner == alice.id:
                by_key.setdefault(asks[i].idempotency_key or "", set()).add(a[0].id)
        assert all(len(ids) == 1 for ids in by_key.values())  # one job per key
        assert answers[16] == (earlier, False)  # the earlier job, at the limit
        refused = [a for a in answers.values() if isinstance(a, QuotaExceeded)]
        assert refused and all(a.extra["limit"] == 100 for a in refused)
        assert all(isinstance(answers[i], tuple) and answers[i][1] for i in (17, 18, 19))  # bob
        used_key = sorted(by_key)[0]
        with pytest.raises(IdempotencyConflict):  # a key reused for another request
            await store.create_job(new_job(alice.id, "other", key=used_key, request="h2"),
                                   quota=100)
