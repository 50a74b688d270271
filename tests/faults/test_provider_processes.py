"""ElevenLabs in production, across real processes: ``run.py api`` / ``run.py worker``
subprocesses on the session's Valkey and a test's Postgres, talking to ``FakeElevenLabs`` (a real
HTTP server in a thread of this test process) through ``ELEVENLABS_BASE_URL``.

- single flight across processes: identical jobs on two workers cost one provider call;
- the global provider semaphore: three workers never exceed the account's concurrency; when the
  account allows less than we think, its 429s are waited out without spending attempts;
- a worker SIGKILLed while its request is at the provider: the lock and the provider slot come
  back (by lease for another worker, at once for the same consumer restarted), the waiting
  identical jobs get the audio, nothing is lost;
- mixed identical and distinct jobs with injected 429 ``system_busy`` and 503s: each distinct
  text generated once, every job succeeds;
- Korean and English through the real adapter (in-process): decodable audio of a plausible
  length, ``language_code`` only sent to models that take it.

Each test ends with the total-queue check.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import trio

from protocols.redis.keys import Keys
from protocols.redis.queue import open_queue
from protocols.settings import Settings
from tests.support.elevenlabs.server import FakeElevenLabs
from tests.support.harness import total_queue_check
from tests.support.procs import (
    ChorusProcess,
    chorus_process,
    client,
    eventually,
    job_rows,
    sql,
    unique_prefix,
    wait_all_terminal,
)

ACCOUNT_KEY = "sk-fake-multiproc"
WORKER_READY = "Chorus worker"


def el_env(fake: FakeElevenLabs, **extra: str) -> dict[str, str]:
    """Subprocess environment: ElevenLabs (the fake) chosen because the key is set."""
    env = {
        "CHORUS_PROVIDER": "",  # empty = unset: run.py picks ElevenLabs because of the key
        "ELEVENLABS_API_KEY": ACCOUNT_KEY,
        "ELEVENLABS_BASE_URL": fake.base_url,
        "ELEVENLABS_TIMEOUT_S": "20",
        "CHORUS_LEASE_S": "3",
        "CHORUS_RECLAIM_INTERVAL_S": "0.3",
        "CHORUS_PROVIDER_CONCURRENCY": "3",
        "CHORUS_PROVIDER_WAIT_S": "40",
    }
    env.update(extra)
    return env


@dataclass
class Cluster:
    api: ChorusProcess | None
    workers: dict[str, ChorusProcess]
    prefix: str
    redis_url: str
    database_url: str
    accepted: list[str] = field(default_factory=list)
    answers: Counter[int] = field(default_factory=Counter)

    async def submit(self, key: str, texts: Iterable[str], **body: object) -> list[str]:
        """Submit concurrently as the user of ``key``; 202 (or 200: answered from the cache)."""
        assert self.api is not None
        ids: dict[int, str] = {}

        async def one(http: httpx.AsyncClient, i: int, text: str) -> None:
            r = await http.post("/v1/jobs", json={"text": text, **body})
            assert r.status_code in (200, 202), r.text
            self.answers[r.status_code] += 1
            ids[i] = r.json()["id"]

        async with client(self.api.base_url, key, timeout=30) as http:
            async with trio.open_nursery() as nursery:
                for i, text in enumerate(texts):
                    nursery.start_soon(one, http, i, text)
        new = [ids[i] for i in sorted(ids)]
        self.accepted.extend(new)
        return new

    async def own_pending(self, consumer: str) -> int:
        async with open_queue(self.redis_url, Keys(self.prefix), stream_timeout=5) as queue:
            return len(await queue.own_pending(consumer, 1000))

    async def drained(self) -> bool:
        async with open_queue(self.redis_url, Keys(self.prefix), stream_timeout=5) as queue:
            return await queue.pending_count() == 0 and await queue.backlog() == 0

    async def stop_all(self) -> None:
        """Wait for every ack, then SIGTERM every process: each must exit 0."""
        await eventually(self.drained, 15, "every entry acked", interval=0.05)
        procs = [p for p in (self.api, *self.workers.values()) if p and p.returncode is None]
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            assert await proc.wait_exit(15) == 0, proc.output


@asynccontextmanager
async def cluster(
    tmp_path: Path,
    redis_url: str,
    database_url: str,
    env: dict[str, str],
    workers: Iterable[str],
    *,
    api: bool = True,
    prefix: str | None = None,
) -> AsyncIterator[Cluster]:
    """An ``api`` process and one ``worker`` per consumer name, sharing a data dir (the blob
    store: audio files are shared, as on a shared volume), started together."""
    prefix = prefix or unique_prefix()
    async with AsyncExitStack() as stack:

        async def start(role: str, consumer: str) -> ChorusProcess:
            return await stack.enter_async_context(
                chorus_process(
                    data_dir=tmp_path, redis_url=redis_url, database_url=database_url,
                    consumer=consumer, prefix=prefix, env=env, role=role, ready=None,
                )
            )

        front = await start("api", "api") if api else None
        procs = {name: await start("worker", name) for name in workers}
        if front is not None:
            await front.wait_for_line("listening on", 30)
        for proc in procs.values():
            await proc.wait_for_line(WORKER_READY, 30)
        c = Cluster(front, procs, prefix, redis_url, database_url)
        for name in procs:  # "started" promises the consumer group: no NOGROUP from here on
            assert await c.own_pending(name) == 0
        yield c


async def start_worker(
    stack: AsyncExitStack, tmp_path: Path, c: Cluster, env: dict[str, str], consumer: str
) -> ChorusProcess:
    proc = await stack.enter_async_context(
        chorus_process(
            data_dir=tmp_path, redis_url=c.redis_url, database_url=c.database_url,
            consumer=consumer, prefix=c.prefix, env=env, role="worker", ready=WORKER_READY,
        )
    )
    c.workers[consumer] = proc
    return proc


def ok_calls(fake: FakeElevenLabs) -> Counter[str]:
    """Successful TTS calls per text."""
    return Counter(c.text or "" for c in fake.calls if c.status == 200)


async def audio_of_jobs(database_url: str) -> list[list[str]]:
    """(job id, status, attempts, audio id, audio path) for every job."""
    return await sql(
        database_url,
        "SELECT j.id, j.status, j.attempts, coalesce(j.audio_id, ''), coalesce(a.path, '')"
        " FROM jobs j LEFT JOIN audio a ON a.id = j.audio_id",
    )


async def semaphore_members(redis_url: str, prefix: str) -> tuple[list[tuple[str, float]], float]:
    """The provider semaphore's members (token, expiry ms) and Redis' clock (ms)."""
    async with open_queue(redis_url, Keys(prefix), stream_timeout=5) as queue:
        r = queue.client
        keys = [k async for k in r.scan_iter(match=f"{prefix}:sem:*")]
        members: list[tuple[str, float]] = []
        for key in keys:
            for member, score in await r.zrange(key, 0, -1, withscores=True):
                name = member.decode() if isinstance(member, bytes) else str(member)
                members.append((name, float(score)))
        now = await r.time()  # coredis: a datetime from Redis' TIME
        return members, now.timestamp() * 1000


async def live_slots(redis_url: str, prefix: str) -> list[str]:
    members, now = await semaphore_members(redis_url, prefix)
    return [m for m, expiry in members if expiry > now]


# -- 1. single flight across processes ------------------------------------------------------------


@pytest.mark.slow
async def test_identical_jobs_on_two_workers_cost_one_provider_call(
    redis_url, database_url, store, tmp_path
):
    jobs, text = 20, "Twenty identical lines, one voice, one format: generated once."
    _, key_a = await store.create_user("same-a")
    _, key_b = await store.create_user("same-b")
    with FakeElevenLabs(api_key=ACCOUNT_KEY, latency_s=1.0) as fake, trio.fail_after(60):
        async with cluster(
            tmp_path, redis_url, database_url, el_env(fake), ["worker-a", "worker-b"]
        ) as c:
            seen: set[str] = set()

            async def watch_pending() -> None:
                while True:
                    for name in c.workers:
                        if await c.own_pending(name):
                            seen.add(name)
                    await trio.sleep(0.02)

            started = time.monotonic()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_pending)
                # two users: each gets an audio row of its own, pointing at the one shared file
                async with trio.open_nursery() as submitting:
                    submitting.start_soon(c.submit, key_a, [text] * (jobs // 2))
                    submitting.start_soon(c.submit, key_b, [text] * (jobs // 2))
                await wait_all_terminal(database_url, jobs, timeout=30)
                nursery.cancel_scope.cancel()
            elapsed = time.monotonic() - started
            await c.stop_all()
        calls = ok_calls(fake)
        stats = fake.stats()
    rows = await audio_of_jobs(database_url)
    print(f"{jobs} identical jobs on 2 workers in {elapsed:.2f} s: provider calls {stats},"
          f" answers {dict(c.answers)}, workers that held entries {sorted(seen)}")
    assert calls == {text: 1}, calls
    assert stats["tts_calls"] == 1, stats
    assert seen == {"worker-a", "worker-b"}, "the jobs did not spread over both workers"
    assert len(rows) == jobs and {r[1] for r in rows} == {"succeeded"}, rows
    assert len({r[4] for r in rows}) == 1, "jobs point at different files"
    assert len({r[3] for r in rows}) == 2, "one audio row per owner expected"
    assert (tmp_path / "audio").is_dir() and Path(rows[0][4]).name
    tally = await total_queue_check(store, redis_url, Settings(redis_prefix=c.prefix), c.accepted)
    assert tally["succeeded"] == jobs


# -- 2. the global provider semaphore under load ------------------------------------------------


@pytest.mark.slow
async def test_three_workers_stay_within_the_account_concurrency(
    redis_url, database_url, store, tmp_path
):
    first, second = 60, 30
    _, key = await store.create_user("load")
    with (
        FakeElevenLabs(api_key=ACCOUNT_KEY, latency_s=0.15, concurrency_limit=3) as fake,
        trio.fail_after(60),
    ):
        async with cluster(
            tmp_path, redis_url, database_url, el_env(fake),
            ["worker-a", "worker-b", "worker-c"],
        ) as c:
            # phase 1: our limit (3) is the account's: no request is ever turned away
            started = time.monotonic()
            texts = [f"Distinct line number {i} under load." for i in range(first)]
            await c.submit(key, texts)
            await wait_all_terminal(database_url, first, timeout=40)
            phase1_s = time.monotonic() - started
            phase1 = fake.stats()
            calls1 = ok_calls(fake)

            # phase 2: the account allows only 2 (a plan downgrade we were not told about):
            # its 429s are waited out inside the adapter, without spending attempts
            fake.reset_stats()
            fake.concurrency_limit = 2
            started = time.monotonic()
            more = [f"Second wave line {i}, the account allows two." for i in range(second)]
            await c.submit(key, more)
            await wait_all_terminal(database_url, first + second, timeout=40)
            phase2_s = time.monotonic() - started
            phase2 = fake.stats()
            calls2 = ok_calls(fake)
            await c.stop_all()
    rows = await job_rows(database_url)
    print(f"phase 1: {first} jobs on 3 workers in {phase1_s:.2f} s, peak"
          f" {phase1['peak_concurrency']}, 429s {phase1['rejected_429']}, calls"
          f" {phase1['tts_calls']}; phase 2 (account limit 2, ours 3): {second} jobs in"
          f" {phase2_s:.2f} s, peak {phase2['peak_concurrency']}, 429s {phase2['rejected_429']},"
          f" calls {phase2['tts_calls']}")
    assert phase1["peak_concurrency"] <= 3 and phase1["rejected_429"] == 0, phase1
    assert phase1["peak_concurrency"] >= 2, "the workers never overlapped: not a load test"
    assert calls1 == dict.fromkeys(texts, 1), calls1
    assert phase1["tts_calls"] == first
    assert phase2["peak_concurrency"] <= 2, phase2
    assert phase2["rejected_429"] > 0, "the account's lower limit was never hit"
    assert calls2 == dict.fromkeys(more, 1), calls2
    assert {s for s, _ in rows.values()} == {"succeeded"}, rows
    spent = {i: a for i, (_, a) in rows.items() if a != 1}
    assert not spent, f"jobs that spent more than one attempt: {spent}"
    assert not fake.server_errors
    tally = await total_queue_check(store, redis_url, Settings(redis_prefix=c.prefix), c.accepted)
    assert tally["succeeded"] == first + second


# -- 3. a lock and slot holder killed mid-generation ---------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("recovery", ["other-worker", "same-consumer-restarted"])
async def test_holder_killed_mid_generation(recovery, redis_url, database_url, store, tmp_path):
    """One provider slot in all (``CHORUS_PROVIDER_CONCURRENCY=1``): the killed holder's slot
    must come back, or nothing else is ever generated."""
    identical, distinct = 6, 8
    target = "The line whose generation was cut off by a SIGKILL."
    lease_s = 3.0 if recovery == "other-worker" else 60.0
    _, key = await store.create_user(f"kill-{recovery}")
    with FakeElevenLabs(api_key=ACCOUNT_KEY, latency_s=0.1) as fake, trio.fail_after(60):
        env = el_env(fake, CHORUS_PROVIDER_CONCURRENCY="1", CHORUS_LEASE_S=str(lease_s))
        fake.stall(300, times=1)  # the first TTS request never gets an answer
        async with cluster(
            tmp_path, redis_url, database_url, env, ["worker-a", "worker-b"]
        ) as c, AsyncExitStack() as restarts:
            await c.submit(key, [target] * identical)
            await eventually(lambda: fake.stats()["stalled"] >= 1, 15, "the request at the fake")
            (holder_token,) = await eventually(
                lambda: live_slots(redis_url, c.prefix), 5, "the slot holder"
            )  # type: ignore[misc]
            holder = holder_token.split("|")[0]
            c.workers[holder].kill()
            assert await c.workers[holder].wait_exit(5) == -signal.SIGKILL
            killed_at = time.monotonic()
            running = {i for i, (s, _) in (await job_rows(database_url)).items()
                       if s == "running"}
            assert ok_calls(fake)[target] == 0

            if recovery == "same-consumer-restarted":
                await start_worker(restarts, tmp_path, c, env, holder)
            # new work needs the only slot too
            texts = [f"After the kill, distinct line {i}." for i in range(distinct)]
            await c.submit(key, texts)
            await wait_all_terminal(database_url, identical + distinct, timeout=30)
            recovered_s = time.monotonic() - killed_at
            stats, calls = fake.stats(), ok_calls(fake)
            # the fake's clock is this process' monotonic clock
            slot_back_s = min(x.started_at for x in fake.calls if x.status == 200) - killed_at
            await c.stop_all()
        slots_after = await live_slots(redis_url, c.prefix)
        members_after, _ = await semaphore_members(redis_url, c.prefix)
    rows = await audio_of_jobs(database_url)
    by_id = {r[0]: r for r in rows}
    target_rows = [r for r in rows if r[0] in c.accepted[:identical]]
    print(f"{recovery}: killed {holder} holding the only slot ({len(running)} jobs running);"
          f" the next provider call {slot_back_s:.2f} s and all {len(rows)} jobs done"
          f" {recovered_s:.2f} s after the kill (lease {lease_s} s);"
          f" fake: peak {stats['peak_concurrency']}, 429s {stats['rejected_429']}, stalled"
          f" {stats['stalled']}, 200s for the target {calls[target]}; semaphore after:"
          f" {members_after}")
    assert {r[1] for r in rows} == {"succeeded"}, rows
    assert calls[target] == 1, calls  # the killed request was never answered: one more call
    assert all(calls[t] == 1 for t in texts), calls
    assert len({r[4] for r in target_rows}) == 1, "identical jobs point at different files"
    assert stats["peak_concurrency"] <= 1 and stats["rejected_429"] == 0, stats
    assert slots_after == [], f"live provider slots after the run: {slots_after}"
    assert all(int(by_id[i][2]) <= 2 for i in running), rows
    if recovery == "same-consumer-restarted":
        # own pending entries, the lock (same job) and the slot (same consumer) taken back at
        # once: nothing waited for the 60 s lease
        assert recovered_s < lease_s / 4, recovered_s
    else:
        # the dead holder renewed its slot every lease/3: it comes back no earlier than
        # 2/3 of the lease after the kill (and nobody generated in between)
        assert slot_back_s >= lease_s * 2 / 3 - 0.5, slot_back_s
    tally = await total_queue_check(store, redis_url, Settings(redis_prefix=c.prefix), c.accepted)
    assert tally["succeeded"] == identical + distinct


# -- 4. mixed identical and distinct jobs, with provider errors ------------------------------------


@pytest.mark.slow
async def test_mixed_jobs_with_provider_errors_generate_each_text_once(
    redis_url, database_url, store, tmp_path
):
    distinct, copies = 12, 4
    texts = [f"Mixed line {i}: said once, asked for {copies} times." for i in range(distinct)]
    _, key = await store.create_user("mixed")
    with FakeElevenLabs(api_key=ACCOUNT_KEY, latency_s=0.2) as fake, trio.fail_after(60):
        fake.inject(429, "system_busy", times=3)
        fake.inject(503, "service_unavailable", times=3)
        # two tries per delivery: a request that meets both kinds of error gives up, its job is
        # released (and its lock with it) and redelivered, and an identical job may take over
        env = el_env(fake, CHORUS_PROVIDER_MAX_ATTEMPTS="2")
        async with cluster(
            tmp_path, redis_url, database_url, env, ["worker-a", "worker-b", "worker-c"]
        ) as c:
            started = time.monotonic()
            await c.submit(key, [t for t in texts for _ in range(copies)])
            await wait_all_terminal(database_url, distinct * copies, timeout=40)
            elapsed = time.monotonic() - started
            stats, calls = fake.stats(), ok_calls(fake)
            failed = Counter(c.status for c in fake.calls if c.status != 200)
            await c.stop_all()
    rows = await audio_of_jobs(database_url)
    attempts = Counter(int(r[2]) for r in rows)
    print(f"{distinct} texts x {copies} on 3 workers in {elapsed:.2f} s: {stats['tts_calls']}"
          f" requests, errors {dict(failed)}, injected {stats['injected']}, peak"
          f" {stats['peak_concurrency']}, answers {dict(c.answers)}, jobs by attempts"
          f" {dict(attempts)}")
    assert stats["injected"] == 6, stats
    assert calls == dict.fromkeys(texts, 1), calls
    assert {r[1] for r in rows} == {"succeeded"} and len(rows) == distinct * copies, rows
    paths = Counter(r[4] for r in rows)
    assert len(paths) == distinct and set(paths.values()) == {copies}, paths
    assert stats["peak_concurrency"] <= 3 and stats["rejected_429"] == 0, stats
    tally = await total_queue_check(store, redis_url, Settings(redis_prefix=c.prefix), c.accepted)
    assert tally["succeeded"] == distinct * copies


# -- 5. Korean and English through the real adapter -----------------------------------------------


LANGUAGE_CASES = [
    # (text, request fields, language_code the fake must see)
    ("옛날 옛적에 작은 여우가 숲 가장자리에 살았어요.", {"language": "ko"}, "ko"),
    ("Once upon a time, a small fox lived at the edge of the forest.", {"language": "en"}, "en"),
    ("여우는 매일 아침 강가에서 물을 마셨어요.",
     {"language": "ko", "output_format": "opus_48000_64"}, "ko"),
    # eleven_multilingual_v2 takes no language_code (the fake answers 400 if it gets one)
    ("작은 여우는 친구를 찾고 있었어요.",
     {"language": "ko", "model_id": "eleven_multilingual_v2"}, None),
    ("The fox found a friend by the river.", {"model_id": "eleven_multilingual_v2"}, None),
    ("The end.", {"language": "en-US", "output_format": "wav_22050"}, "en"),
]


async def test_korean_and_english_through_the_real_adapter(redis_url, store, tmp_path):
    from protocols.domain.audio import audio_duration, decode_to_pcm, parse_format
    from protocols.providers.elevenlabs.provider import ElevenLabsProvider
    from protocols.settings import Secret
    from tests.support.elevenlabs.catalog import LANGUAGE_CODE_MODELS
    from tests.support.harness import make_settings, running_service

    with FakeElevenLabs(api_key=ACCOUNT_KEY) as fake, trio.fail_after(30):
        settings = make_settings(
            tmp_path, elevenlabs_api_key=Secret(ACCOUNT_KEY), elevenlabs_base_url=fake.base_url,
            elevenlabs_timeout_s=10.0,
        )
        async with (
            ElevenLabsProvider.open(settings) as provider,
            running_service(
                redis_url=redis_url, store=store, settings=settings, provider=provider
            ) as svc,
        ):
            ids = []
            for text, fields, _ in LANGUAGE_CASES:
                r = await svc.submit(text, **fields)
                assert r.status_code == 202, r.text
                ids.append(r.json()["id"])
            jobs = await svc.wait_done(ids, limit_s=20)
            clips = {}
            for job_id in ids:
                assert jobs[job_id]["status"] == "succeeded", jobs[job_id]
                r = await svc.client.get(jobs[job_id]["audio_url"])
                assert r.status_code == 200, r.text
                clips[job_id] = (r.content, r.headers["content-type"])
            tally = await total_queue_check(store, redis_url, settings, svc.accepted)
        calls = {c.text: c for c in fake.calls}
    for (text, fields, code), job_id in zip(LANGUAGE_CASES, ids, strict=True):
        call = calls[text]
        fmt = parse_format(fields.get("output_format", "mp3_44100_128"))
        data, content_type = clips[job_id]
        pcm = decode_to_pcm(data, fmt)
        duration = len(pcm) / 2 / fmt.sample_rate
        expected = min(max(len(text) * fake.ms_per_char / 1000, 0.05), fake.max_audio_s)
        print(f"{fields}: model {call.model_id}, language_code {call.language_code},"
              f" {fmt.name} {len(data)} bytes, {duration:.3f} s (expected {expected:.3f} s)")
        assert call.status == 200 and call.output_format == fmt.name, call
        assert content_type.startswith(fmt.content_type.split(";")[0]), content_type
        assert abs(duration - expected) < 0.1, (duration, expected)
        assert abs(audio_duration(data, fmt) - expected) < 0.1
        assert call.language_code == code, call
        if call.language_code is not None:
            assert call.model_id in LANGUAGE_CODE_MODELS, call
        if "model_id" in fields:
            assert call.model_id == fields["model_id"]
    assert tally["succeeded"] == len(LANGUAGE_CASES)
    assert len(fake.calls) == len(LANGUAGE_CASES) and not fake.server_errors


# -- 6. two workers on one data dir without CHORUS_CONSUMER ----------------------------------------


@pytest.mark.slow
async def test_second_worker_on_a_shared_data_dir_takes_nothing_from_the_first(
    redis_url, database_url, store, tmp_path
):
    """Regression: both used to get the one persisted name, so the second, at start, freed the
    first's provider slots (as its own dead incarnation's) and re-ran its running entries."""
    jobs = 6
    _, key = await store.create_user("shared-dir")
    with (
        FakeElevenLabs(api_key=ACCOUNT_KEY, latency_s=1.5, concurrency_limit=10) as fake,
        trio.fail_after(40),
    ):
        env = el_env(fake, CHORUS_CONSUMER="", CHORUS_LEASE_S="30")  # names from the data dir
        async with (
            cluster(tmp_path, redis_url, database_url, env, ["first"]) as c,
            AsyncExitStack() as later,
        ):
            texts = [f"Shared data dir line {i}." for i in range(jobs)]
            await c.submit(key, texts)
            await eventually(lambda: fake.in_flight == 3, 15, "the first worker's 3 requests")
            second = await start_worker(later, tmp_path, c, env, "second")
            await wait_all_terminal(database_url, jobs, timeout=20)
            stats, calls = fake.stats(), ok_calls(fake)
            await c.stop_all()
    names = [p.find(WORKER_READY) for p in c.workers.values()]
    print(f"{names}; fake: peak {stats['peak_concurrency']}, calls {stats['tts_calls']}")
    assert len(set(names)) == 2, names
    assert second.find("took back") is None, second.output
    assert stats["peak_concurrency"] <= 3, stats
    assert calls == dict.fromkeys(texts, 1), calls
    assert sorted(p.name for p in tmp_path.glob("consumer-name*")) == [
        "consumer-name", "consumer-name.1", "consumer-name.1.lock", "consumer-name.lock"
    ]
    tally = await total_queue_check(store, redis_url, Settings(redis_prefix=c.prefix), c.accepted)
    assert tally["succeeded"] == jobs
