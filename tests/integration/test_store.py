"""PgStore against the real embedded Postgres (one fresh database per test)."""

from __future__ import annotations

import socket
from pathlib import Path

import msgspec
import pytest
import trio

from protocols.embedded.servers import run_psql
from protocols.errors import (
    AlreadyExists,
    ConfigError,
    IdempotencyConflict,
    InvalidInput,
    NotFound,
    QuotaExceeded,
    StoreUnavailable,
)
from protocols.messages import Job, JobStatus, NewAudio, NewJob
from protocols.postgres.store import PgStore
from protocols.settings import Secret
from tests.conftest import DB_TIMEOUT_S, free_port

CAP_S = 20  # every test ends within this, whatever happens


async def psql(url: str, sql: str) -> str:
    return await trio.to_thread.run_sync(run_psql, url, sql)


def new_job(owner: str, job_id: str, *, key: str | None = None, request: str = "h1") -> NewJob:
    return NewJob(
        id=job_id,
        owner=owner,
        text="Hello there",
        voice_id="en-us",
        language="en",
        output_format="mp3_44100_128",
        idempotency_key=key,
        request_hash=request,
    )


def new_audio(owner: str, cache_key: str = "ck1") -> NewAudio:
    return NewAudio(
        owner=owner,
        cache_key=cache_key,
        format="mp3_44100_128",
        content_type="audio/mpeg",
        duration_s=1.25,
        size=2048,
        path=f"ab/{cache_key}.mp3",
    )


MIGRATIONS = Path(__file__).parents[2] / "protocols" / "postgres" / "migrations"


async def test_migrations_apply_once_even_when_opened_concurrently(database_url: str) -> None:
    with trio.fail_after(CAP_S):
        async with trio.open_nursery() as nursery:  # three processes' worth of start-ups at once
            for _ in range(3):
                nursery.start_soon(_open_and_ping, database_url)
        async with PgStore.open(database_url, timeout=DB_TIMEOUT_S) as store:  # and again later
            assert await store.count_users() == 0
        rows = await psql(database_url, "SELECT version FROM schema_migrations ORDER BY 1")
        files = sorted(p.stem for p in MIGRATIONS.glob("*.sql"))
        assert rows.splitlines() == files  # each applied exactly once


async def _open_and_ping(url: str) -> None:
    async with PgStore.open(url, timeout=DB_TIMEOUT_S) as store:
        await store.ping()


async def test_users_and_api_keys(store: PgStore, database_url: str) -> None:
    with trio.fail_after(CAP_S):
        assert await store.count_users() == 0
        admin, admin_key = await store.create_user("root", admin=True)
        user, key = await store.create_user("alice")
        assert (admin.role, user.role) == ("admin", "user")
        assert key.startswith("chk_") and len(key) > 40 and key != admin_key
        assert await store.authenticate(key) == user
        assert await store.authenticate(admin_key) == admin
        assert await store.authenticate(key + "x") is None
        assert await store.authenticate("") is None
        assert await store.count_users() == 2
        assert [u.name for u in await store.list_users()] == ["root", "alice"]
        with pytest.raises(AlreadyExists):
            await store.create_user("alice")
        with pytest.raises(InvalidInput):
            await store.create_user("  ")
        stored = await psql(database_url, "SELECT encode(key_hash, 'escape') FROM api_keys")
        assert key not in stored  # only the hash is kept


async def test_create_job_is_idempotent_per_owner_and_key(store: PgStore) -> None:
    with trio.fail_after(CAP_S):
        alice, _ = await store.create_user("alice")
        bob, _ = await store.create_user("bob")
        job, created = await store.create_job(new_job(alice.id, "j1", key="k"))
        assert created and job.status is JobStatus.queued and job.attempts == 0
        assert job.characters == len("Hello there")
        again, created = await store.create_job(new_job(alice.id, "j2", key="k"))
        assert not created and again == job
        with pytest.raises(IdempotencyConflict):
            await store.create_job(new_job(alice.id, "j3", key="k", request="other"))
        bobs, created = await store.create_job(new_job(bob.id, "j4", key="k"))  # keys per owner
        assert created and bobs.id == "j4"
        # no key: the job id itself is the idempotency key
        _, created = await store.create_job(new_job(alice.id, "j5"))
        replay, created_again = await store.create_job(new_job(alice.id, "j5"))
        assert created and not created_again and replay.id == "j5"
        with pytest.raises(InvalidInput):
            await store.create_job(new_job("no-such-user", "j6"))


async def test_twenty_concurrent_creates_make_one_job(store: PgStore, database_url: str) -> None:
    with trio.fail_after(CAP_S):
        alice, _ = await store.create_user("alice")
        results: list[tuple[Job, bool]] = []

        async def create(i: int) -> None:
            results.append(await store.create_job(new_job(alice.id, f"job-{i}", key="same")))

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(create, i)
        assert len(results) == 20
        assert sum(created for _, created in results) == 1
        assert len({job.id for job, _ in results}) == 1
        assert await psql(database_url, "SELECT count(*) FROM jobs") == "1"


async def test_start_job_is_a_compare_and_set(store: PgStore) -> None:
    with trio.fail_after(CAP_S):
        alice, _ = await store.create_user("alice")
        await store.create_job(new_job(alice.id, "j1"))
        assert await store.start_job("nope") is None
        first = await store.start_job("j1")
        assert first is not None and first.status is JobStatus.running and first.attempts == 1
        second = await store.start_job("j1")  # a redelivery: counts, keeps the first start time
        assert second is not None and second.attempts == 2
        assert second.started_at == first.started_at
        done = await store.finish_job("j1", new_audio(alice.id))
        assert done.status is JobStatus.succeeded
        assert await store.start_job("j1") == done  # terminal: returned unchanged


async def test_finish_job_is_idempotent(store: PgStore, database_url: str) -> None:
    with trio.fail_after(CAP_S):
        alice, _ = await store.create_user("alice")
        for job_id in ("j1", "j2"):
            await store.create_job(new_job(alice.id, job_id))
            await store.start_job(job_id)
        first = await store.finish_job("j1", new_audio(alice.id))
        second = await store.finish_job("j1", new_audio(alice.id))
        assert first.status is JobStatus.succeeded and first.audio_id is not None
        assert second == first
        assert first.finished_at is not None and first.error_code is None
        # another job rendering the same content shares the content-addressed audio row
        other = await store.finish_job("j2", new_audio(alice.id))
        assert other.audio_id == first.audio_id
        assert await psql(database_url, "SELECT count(*) FROM audio") == "1"
        audio = await store.find_audio(alice.id, "ck1")
        assert audio is not None and audio.id == first.audio_id and audio.size == 2048
        assert await store.get_audio(first.audio_id) == audio
        with pytest.raises(NotFound):
            await store.finish_job("nope", new_audio(alice.id))


async def test_finish_job_needs_a_running_job(store: PgStore, database_url: str) -> None:
    with trio.fail_after(CAP_S):
        alice, _ = await store.create_user("alice")
        job, _ = await store.create_job(new_job(alice.id, "j1"))
        assert await store.finish_job("j1", new_audio(alice.id)) == job  # queued: untouched
        assert await psql(database_url, "SELECT count(*) FROM audio") == "0"


async def test_fail_job_never_overrides_a_terminal_state(store: PgStore) -> None:
    with trio.fail_after(CAP_S):
        alice, _ = await store.create_user("alice")
        for job_id in ("ok", "bad"):
            await store.create_job(new_job(alice.id, job_id))
            await store.start_job(job_id)
        done = await store.finish_job("ok", new_audio(alice.id))
        assert await store.fail_job("ok", "synthesis_failed", "boom") == done
        await store.note_error("bad", "provider_unavailable", "503 from provider")
        noted = await store.get_job("bad")
        assert noted is not None and noted.status is JobStatus.running
        assert noted.error_code == "provider_unavailable"
        failed = await store.fail_job("bad", "synthesis_failed", "x" * 5000)
        assert failed is not None and failed.status is JobStatus.failed
        assert failed.error_code == "synthesis_failed" and len(failed.error_message or "") == 2000
        dead = await store.fail_job("bad", "max_deliveries_exceeded", "y", status=JobStatus.dead)
        assert dead == failed  # already terminal
        assert await store.fail_job("nope", "c", "m") is None
        with pytest.raises(InvalidInput):
            await store.fail_job("bad", "c", "m", status=JobStatus.succeeded)
        requeued = await store.requeue_job("bad")
        assert requeued is not None and requeued.status is JobStatus.queued
        assert requeued.finished_at is None
        assert await store.requeue_job("ok") == done  # not failed: unchanged
        assert await store.requeue_job("nope") is None


async def test_discard_job_only_removes_unstarted_jobs(store: PgStore) -> None:
    with trio.fail_after(CAP_S):
        alice, _ = await store.create_user("alice")
        await store.create_job(new_job(alice.id, "fresh"))
        await store.create_job(new_job(alice.id, "started"))
        await store.start_job("started")
        await store.discard_job("fresh")
        await store.discard_job("started")
        await store.discard_job("nope")
        assert await store.get_job("fresh") is None
        assert await store.get_job("started") is not None


async def test_owners_cannot_see_each_others_rows(store: PgStore) -> None:
    with trio.fail_after(CAP_S):
        alice, _ = await store.create_user("alice")
        bob, _ = await store.create_user("bob")
        await store.create_job(new_job(alice.id, "j1"))
        await store.start_job("j1")
        done = await store.finish_job("j1", new_audio(alice.id))
        assert done.audio_id is not None
        assert await store.get_job("j1", owner=alice.id) == done
        assert await store.get_job("j1", owner=bob.id) is None
        assert await store.get_audio(done.audio_id, owner=alice.id) is not None
        assert await store.get_audio(done.audio_id, owner=bob.id) is None


async def test_cache_hit_links_shared_audio_to_the_new_owner_without_charge(
    store: PgStore,
) -> None:
    with trio.fail_after(CAP_S):
        alice, _ = await store.create_user("alice", )
        bob, _ = await store.create_user("bob")
        await store.create_job(new_job(alice.id, "j1"))
        await store.start_job("j1")
        await store.finish_job("j1", msgspec.structs.replace(new_audio(alice.id), charge=11))
        # the cache look-up finds alice's file for bob (the key includes the owner when the
        # cache is per owner); bob gets his own audio row, alice's stays private
        found = await store.find_audio(bob.id, "ck1")
        assert found is not None and found.owner == alice.id
        job, created = await store.create_job(new_job(bob.id, "j2"), quota=0, cached=found)
        assert created and job.status is JobStatus.succeeded and job.cached
        mine = await store.get_audio(job.audio_id or "", owner=bob.id)
        assert mine is not None and mine.path == found.path and mine.id != found.id
        assert (await store.usage(bob.id)).used == 0  # a hit is not charged, even at quota 0
        assert (await store.usage(alice.id)).used == 11


async def test_concurrent_cache_look_ups_share_one_statement_and_answer_as_single_ones(
    store: PgStore,
) -> None:
    with trio.fail_after(CAP_S):
        alice, _ = await store.create_user("alice")
        bob, _ = await store.create_user("bob")
        await store.create_job(new_job(alice.id, "j1"))
        await store.start_job("j1")
        alices = (await store.finish_job("j1", new_audio(alice.id))).audio_id
        await store.create_job(new_job(bob.id, "j2", key="k2"))
        await store.start_job("j2")
        bobs = (await store.finish_job("j2", new_audio(bob.id))).audio_id  # the same file
        asked = [(alice.id, "ck1"), (bob.id, "ck1"), (bob.id, "nothing"), (alice.id, "ck1")]
        found: dict[int, object] = {}

        async def look(i: int, owner: str, key: str) -> None:
            found[i] = await store.find_audio(owner, key)

        async with trio.open_nursery() as nursery:  # the first alone, the rest as one batch
            for i, (owner, key) in enumerate(asked):
                nursery.start_soon(look, i, owner, key)
        # each owner gets their own row of a shared file first; a miss is None
        assert [getattr(found[i], "id", None) for i in range(4)] == [alices, bobs, None, alices]
        for i, (owner, key) in enumerate(asked):
            assert found[i] == await store.find_audio(owner, key)  # as when asked alone


async def test_store_reconnects_after_its_connections_are_killed(
    store: PgStore, database_url: str
) -> None:
    with trio.fail_after(CAP_S):
        await store.ping()
        await psql(
            database_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        await store.ping()  # the pool notices the dead connection and reconnects
        alice, _ = await store.create_user("alice")
        assert await store.count_users() == 1


async def test_unreachable_server_is_store_unavailable_in_bounded_time() -> None:
    url = f"postgresql://chorus:s3cret-pw@127.0.0.1:{free_port()}/chorus"
    with trio.fail_after(CAP_S):
        start = trio.current_time()
        with pytest.raises(StoreUnavailable) as info:
            async with PgStore.open(Secret(url), timeout=2.0):
                pass  # pragma: no cover
        assert trio.current_time() - start < 5
    assert "s3cret" not in _whole_chain(info.value)


async def test_silent_server_times_out_as_store_unavailable() -> None:
    with socket.socket() as sock:  # accepts connections (kernel backlog) and never answers
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        url = f"postgresql://chorus:s3cret-pw@127.0.0.1:{sock.getsockname()[1]}/chorus"
        with trio.fail_after(CAP_S):
            start = trio.current_time()
            with pytest.raises(StoreUnavailable) as info:
                async with PgStore.open(url, timeout=1.0):
                    pass  # pragma: no cover
            assert trio.current_time() - start < 5
    assert "s3cret" not in _whole_chain(info.value)


async def test_closed_store_raises_store_unavailable(database_url: str) -> None:
    with trio.fail_after(CAP_S):
        async with PgStore.open(Secret(database_url), timeout=DB_TIMEOUT_S) as store:
            await store.ping()
        with pytest.raises(StoreUnavailable):
            await store.ping()


async def test_malformed_url_is_a_config_error_without_the_password() -> None:
    with trio.fail_after(CAP_S):
        for url in ("postgresql://u:s3cret-pw@127.0.0.1:port/db", "mysql://u:s3cret-pw@h/db"):
            with pytest.raises(ConfigError) as info:
                async with PgStore.open(url, timeout=2.0):
                    pass  # pragma: no cover
            assert "s3cret" not in _whole_chain(info.value)


async def test_errors_and_cancellation_leave_the_context_unwrapped(database_url: str) -> None:
    with trio.fail_after(CAP_S):
        with pytest.raises(KeyError):  # a plain exception, not an ExceptionGroup
            async with PgStore.open(database_url, timeout=DB_TIMEOUT_S):
                raise KeyError("from the body")
        with trio.move_on_after(0.2) as scope:
            async with PgStore.open(database_url, timeout=DB_TIMEOUT_S) as store:
                await store.ping()
                await trio.sleep_forever()
        assert scope.cancelled_caught


def _whole_chain(exc: BaseException | None) -> str:
    text = ""
    while exc is not None:
        text += f"{type(exc).__name__}: {exc!s} {exc!r}\n"
        exc = exc.__cause__ or exc.__context__
    return text


async def test_quota_counts_usage_and_unfinished_jobs_and_charges_a_job_once(
    store: PgStore,
) -> None:
    with trio.fail_after(CAP_S):
        user, _ = await store.create_user("quota-user")
        await store.set_quota("quota-user", 25)  # "Hello there" is 11 characters
        await store.create_job(new_job(user.id, "q1"), quota=25)
        await store.create_job(new_job(user.id, "q2"), quota=25)  # 22 reserved
        with pytest.raises(QuotaExceeded) as refused:
            await store.create_job(new_job(user.id, "q3"), quota=25)
        assert refused.value.extra["remaining"] == 3
        assert refused.value.extra["reset_at"].endswith("T00:00:00Z")
        assert await store.get_job("q3") is None  # nothing was created
        # an idempotent repeat of an accepted job is answered, not refused
        again, created = await store.create_job(new_job(user.id, "q1"), quota=25)
        assert again.id == "q1" and not created
        await store.start_job("q1")
        audio = msgspec.structs.replace(new_audio(user.id), charge=11)
        await store.finish_job("q1", audio)
        await store.start_job("q1")  # a redelivery of a finished job
        await store.finish_job("q1", audio)  # finishing again charges nothing more
        usage = await store.usage(user.id)
        assert (usage.used, usage.reserved, usage.remaining, usage.jobs_charged) == (11, 11, 3, 1)
        await store.set_quota("quota-user", None)
        assert (await store.usage(user.id)).remaining is None


async def test_list_jobs_pages_newest_first_and_only_the_owners(store: PgStore) -> None:
    with trio.fail_after(CAP_S):
        alice, _ = await store.create_user("alice")
        bob, _ = await store.create_user("bob")
        for i in range(5):
            await store.create_job(new_job(alice.id, f"a{i}", request=f"h{i}"))
        await store.create_job(new_job(bob.id, "b0"))
        await store.cancel_job("a1", alice.id)
        first = await store.list_jobs(alice.id, limit=3)
        assert [j.id for j in first] == ["a4", "a3", "a2"]
        last = first[-1]
        rest = await store.list_jobs(alice.id, before=(last.created_at, last.id), limit=3)
        assert [j.id for j in rest] == ["a1", "a0"]
        cancelled = await store.list_jobs(alice.id, status=JobStatus.cancelled)
        assert [j.id for j in cancelled] == ["a1"]
        later = await store.list_jobs(alice.id, created_after=rest[0].created_at)
        assert [j.id for j in later] == ["a4", "a3", "a2"]
        assert [j.id for j in await store.list_jobs(bob.id)] == ["b0"]
