"""The cheap cache hit, on in-memory fakes: a compatible convert that is a hit sends a clip it
sent before without reading its row or file again (never another user's), its job row is the
only one committed without the log flush (``POST /v1/jobs`` keeps it durable), and a default
voice's row is read once per ``DEFAULT_ROW_TTL_S`` while a private voice is read every time."""

from __future__ import annotations

import datetime as dt

import msgspec
import trio
import trio.testing

from protocols.domain import voices as voices_module
from protocols.domain.audio import parse_format
from protocols.domain.voices import VoiceCatalog
from protocols.errors import UnknownVoice
from protocols.messages import Audio, JobStatus, NewAudio, NewVoice, Visibility, VoiceStatus
from protocols.providers.fake import FakeProvider
from tests.support.fakes import TEST_VOICES, FakeJobStore
from tests.unit.test_web import Env, env  # noqa: F401 (the fixture)
from web.compat.clips import ClipCache
from web.compat.jobs import stored_clip
from web.problems import AudioMissing


def audio(audio_id: str, owner: str, size: int = 10) -> Audio:
    return Audio(id=audio_id, owner=owner, cache_key="k" + audio_id, format="mp3_44100_128",
                 content_type="audio/mpeg", duration_s=1.0, size=size, path=f"{audio_id}.mp3",
                 created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))


async def finish(env: Env, job_id: str, data: bytes = b"ID3-audio") -> str:  # noqa: F811
    """Run a job to success as the TTS pool would: its audio under its own cache key."""
    job = await env.store.start_job(job_id)
    assert job is not None and job.cache_key
    path = await env.blobs.put(job.cache_key, "mp3", data)
    done = await env.store.finish_job(job_id, NewAudio(
        owner=job.owner, cache_key=job.cache_key, format=job.output_format,
        content_type=parse_format(job.output_format).content_type, duration_s=1.0,
        size=len(data), path=path,
    ))
    assert done.audio_id is not None
    return done.audio_id


def test_the_clip_cache_keeps_owners_apart_and_stays_within_its_bytes() -> None:
    clips = ClipCache(max_bytes=25, max_clip=12)
    clips.put(audio("aud_a", "alice"), b"a" * 10)
    assert clips.get("aud_a", "alice") == (audio("aud_a", "alice"), b"a" * 10)
    assert clips.get("aud_a", "bob") is None  # the id alone is not enough
    clips.put(audio("aud_big", "alice"), b"x" * 13)  # over max_clip: not kept
    assert clips.get("aud_big", "alice") is None
    clips.put(audio("aud_b", "alice"), b"b" * 10)
    clips.get("aud_a", "alice")  # a used more recently than b
    clips.put(audio("aud_c", "alice"), b"c" * 10)  # 30 bytes > 25: the least recent goes
    assert clips.get("aud_b", "alice") is None
    assert clips.get("aud_a", "alice") is not None and clips.get("aud_c", "alice") is not None
    assert clips.size == 20 and len(clips) == 2


async def test_a_repeated_convert_is_sent_from_memory_and_its_row_needs_no_flush(
    env: Env, autojump_clock: trio.testing.MockClock,  # noqa: F811
) -> None:
    client = env.client()
    path, body = "/v1/text-to-speech/en-1", {"text": "Say it again."}
    async with trio.open_nursery() as nursery:
        async def first() -> None:
            r = await client.post(path, headers={"xi-api-key": env.key}, json=body)
            assert r.status_code == 200 and await r.get_data() == b"ID3-audio"
        nursery.start_soon(first)
        await trio.testing.wait_all_tasks_blocked()  # the route waits for its job
        await finish(env, env.submitted[0].job_id)
    reads = env.store.calls["get_audio"]
    for _ in range(3):
        r = await client.post(path, headers={"xi-api-key": env.key}, json=body)
        assert r.status_code == 200 and await r.get_data() == b"ID3-audio"
        assert r.headers["character-cost"] == "0"
    assert env.store.calls["get_audio"] == reads  # the clip came from memory
    hits = [j for j in env.store.jobs.values() if j.cached]
    assert len(hits) == 3 and all(j.status is JobStatus.succeeded for j in hits)
    assert sorted(env.store.not_durable) == sorted(j.id for j in hits)

    r = await client.post("/v1/jobs", headers=env.auth, json={**body, "voice_id": "en-1"})
    assert r.status_code == 200 and (await r.get_json())["cached"]
    assert (await r.get_json())["id"] not in env.store.not_durable  # answered by id: durable


async def test_a_remembered_clip_is_never_given_for_another_users_job(
    env: Env, autojump_clock: trio.testing.MockClock,  # noqa: F811
) -> None:
    async with trio.open_nursery() as nursery:
        async def convert() -> None:
            r = await env.client().post("/v1/text-to-speech/en-1", headers={"xi-api-key": env.key},
                                        json={"text": "Mine alone."})
            assert r.status_code == 200
        nursery.start_soon(convert)
        await trio.testing.wait_all_tasks_blocked()
        audio_id = await finish(env, env.submitted[0].job_id)
    assert env.ctx.clips.get(audio_id, env.user.id) is not None
    mine = next(j for j in env.store.jobs.values() if j.audio_id == audio_id)
    forged = msgspec.structs.replace(mine, id="job_forged", owner=env.other.id)
    try:
        await stored_clip(env.ctx, forged)
    except AudioMissing:
        pass
    else:
        raise AssertionError("another user's job was given the remembered clip")


async def test_default_voice_rows_are_remembered_private_ones_are_not(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store, provider = FakeJobStore(), FakeProvider(voices=TEST_VOICES)
    catalog = VoiceCatalog(store, provider)
    await catalog.ensure_defaults()
    alice, _ = await store.create_user("alice")
    bob, _ = await store.create_user("bob")
    private = await store.create_voice(NewVoice(
        id="voice_mine", provider=provider.name, provider_voice_id="p-mine", owner=alice.id,
        name="Mine", description="", labels={}, language="en", languages=("en",),
        category="cloned", status=VoiceStatus.completed, visibility=Visibility.private,
    ))
    default_id = next(iter(TEST_VOICES)).voice_id
    before = store.calls["get_voice"]
    for _ in range(3):
        assert (await catalog.for_job(default_id, None, bob.id)).voice_id == default_id
    assert store.calls["get_voice"] - before == 1
    await trio.sleep(voices_module.DEFAULT_ROW_TTL_S + 0.1)
    await catalog.for_job(default_id, None, bob.id)
    assert store.calls["get_voice"] - before == 2  # read again once its time is up

    before = store.calls["get_voice"]
    for _ in range(2):
        assert (await catalog.for_job(private.id, None, alice.id)).voice_id == "p-mine"
        try:
            await catalog.for_job(private.id, None, bob.id)
        except UnknownVoice:
            pass
        else:
            raise AssertionError("bob was given alice's private voice")
    assert store.calls["get_voice"] - before == 4  # every time
