"""Voices on in-memory fakes: visibility across two users on every voice route and for jobs,
clone uploads and their limits, and VoiceSync on trio's virtual clock (ready → completed with
a preview, the 30-minute timeout, a crash mid-poll, a restart with its schedule lost)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import msgspec
import pytest
import trio

from actors.pipeline.intake import Intake
from actors.supervision.supervisor import ChildSpec, Strategy, Supervisor, SupervisorPolicy
from actors.voices.voice_sync import VoiceSync
from protocols.domain.voices import VoiceCatalog
from protocols.events import EventKind
from protocols.faults import FaultPlan
from protocols.messages import (
    JobStatus,
    NewAudio,
    NewVoice,
    ProviderVoiceState,
    SpeechJob,
    Visibility,
    VoiceStatus,
)
from protocols.providers.fake import FakeProvider
from protocols.settings import Settings
from tests.support.clips import clip, elf_bytes, text_bytes
from tests.support.fake_voices import FakeVoiceManager, MemoryVoiceSyncQueue
from tests.support.fakes import TEST_VOICES, FakeBlobStore, FakeJobStore, RecordingEvents
from tests.unit.test_web import problem_of
from web.app import create_app
from web.context import WebContext

MP3 = ("a.mp3", clip("mp3"), "audio/mpeg")
WAV = ("b.wav", clip("wav"), "audio/wav")


@dataclasses.dataclass
class VEnv:
    store: FakeJobStore
    manager: FakeVoiceManager
    events: RecordingEvents
    ctx: WebContext
    keys: dict[str, str]
    ids: dict[str, str]
    submitted: list[SpeechJob]
    #: what jobs are handed to (records them in ``submitted``)
    enqueue: Any = None

    def client(self) -> Any:
        return create_app(self.ctx).test_client()

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}


async def post_clone(client: Any, headers: dict[str, str], form: dict[str, str],
                     files: Any) -> Any:
    boundary = "chorusboundary"
    chunks: list[bytes] = []
    for name, value in form.items():
        chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'
                      f"\r\n\r\n{value}\r\n".encode())
    for filename, data, kind in files:
        chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="files";'
                      f' filename="{filename}"\r\nContent-Type: {kind}\r\n\r\n'.encode()
                      + data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return await client.post("/v1/voices", data=b"".join(chunks), headers={
        **headers, "Content-Type": f"multipart/form-data; boundary={boundary}"})


@pytest.fixture
async def venv() -> VEnv:
    return await make_venv()


async def make_venv() -> VEnv:
    """Two users (alice, bob), the fake provider with a cloning voice manager, the web app."""
    store, provider = FakeJobStore(), FakeProvider(voices=TEST_VOICES)
    manager = FakeVoiceManager(provider="fake", defaults=await provider.voices())
    events = RecordingEvents()
    submitted: list[SpeechJob] = []
    alice, akey = await store.create_user("alice")
    bob, bkey = await store.create_user("bob")

    async def submit(job: SpeechJob) -> None:
        await trio.lowlevel.checkpoint()
        submitted.append(job)

    async def readiness() -> dict[str, bool]:
        return {}

    catalog = VoiceCatalog(store, provider, manager)
    settings, blobs = Settings(max_text_chars=100), FakeBlobStore()
    intake = Intake(settings, store=store, blobs=blobs, provider=provider, voices=catalog,
                    enqueue=submit, events=events)
    ctx = WebContext(settings=settings, store=store, blobs=blobs, provider=provider,
                     intake=intake, readiness=readiness, events=events, voices=catalog)
    return VEnv(store, manager, events, ctx, {"alice": akey, "bob": bkey},
                {"alice": alice.id, "bob": bob.id}, submitted, submit)


async def add_voice(env: VEnv, owner: str, *, visibility: Visibility = Visibility.private,
                    status: VoiceStatus = VoiceStatus.completed, vid: str = "") -> str:
    voice = await env.store.create_voice(NewVoice(
        id=vid or f"voice_{owner}_{visibility.value}", provider="fake",
        provider_voice_id="en-1", owner=env.ids[owner], name=f"{owner} {visibility.value}",
        language="en", languages=("en",), status=status, visibility=visibility,
    ))
    return voice.id


# --- visibility ---------------------------------------------------------------------------------


async def test_private_voice_is_invisible_to_others_on_every_route(venv: VEnv) -> None:
    with trio.fail_after(10):
        mine = await add_voice(venv, "alice")
        shared = await add_voice(venv, "alice", visibility=Visibility.public)
        c = venv.client()
        listed = await (await c.get("/v1/voices", headers=venv.auth("bob"))).get_json()
        ids = {v["id"] for v in listed["voices"]}
        assert shared in ids and mine not in ids and {"en-1", "ko-1"} <= ids
        own = await (await c.get("/v1/voices", headers=venv.auth("alice"))).get_json()
        assert {mine, shared} <= {v["id"] for v in own["voices"]}

        missing = await problem_of(await c.get("/v1/voices/nope", headers=venv.auth("bob")),
                                   404, "voice_not_found")
        hidden = await problem_of(await c.get(f"/v1/voices/{mine}", headers=venv.auth("bob")),
                                  404, "voice_not_found")
        assert hidden["detail"] == missing["detail"].replace("nope", mine)
        for method in ("patch", "delete"):
            r = await getattr(c, method)(f"/v1/voices/{mine}", headers=venv.auth("bob"),
                                         json={"name": "x"})
            await problem_of(r, 404, "voice_not_found")
        await problem_of(await c.get(f"/v1/voices/{mine}/preview", headers=venv.auth("bob")),
                         404, "voice_not_found")
        # someone else's public voice: visible, not theirs to change
        r = await c.patch(f"/v1/voices/{shared}", headers=venv.auth("bob"), json={"name": "x"})
        await problem_of(r, 403, "forbidden")
        assert (await c.get(f"/v1/voices/{mine}", headers=venv.auth("alice"))).status_code == 200


async def test_jobs_with_another_users_private_voice_are_404_like_unknown(venv: VEnv) -> None:
    with trio.fail_after(10):
        mine = await add_voice(venv, "alice")
        shared = await add_voice(venv, "alice", visibility=Visibility.public)
        busy = await add_voice(venv, "alice", status=VoiceStatus.processing, vid="voice_busy")
        c = venv.client()

        async def post(who: str, voice_id: str) -> Any:
            return await c.post("/v1/jobs", headers=venv.auth(who),
                                json={"text": "hi", "voice_id": voice_id})

        unknown = await problem_of(await post("bob", "voice_nope"), 404, "voice_not_found")
        hidden = await problem_of(await post("bob", mine), 404, "voice_not_found")
        assert hidden["detail"] == unknown["detail"].replace("voice_nope", mine)
        assert (await post("alice", mine)).status_code == 202
        assert (await post("bob", shared)).status_code == 202
        assert (await post("bob", "en-2")).status_code == 202  # a default voice
        await problem_of(await post("alice", busy), 409, "voice_not_ready")
        await problem_of(await post("bob", busy), 404, "voice_not_found")
        assert [j.voice_id for j in venv.submitted] == ["en-1", "en-1", "en-2"]


async def test_list_filters_and_cursor(venv: VEnv) -> None:
    with trio.fail_after(10):
        await add_voice(venv, "alice")
        c, h = venv.client(), venv.auth("alice")
        page = await (await c.get("/v1/voices?limit=2", headers=h)).get_json()
        seen = [v["id"] for v in page["voices"]]
        while page["next_cursor"]:
            page = await (await c.get(f"/v1/voices?limit=2&cursor={page['next_cursor']}",
                                      headers=h)).get_json()
            seen += [v["id"] for v in page["voices"]]
        assert seen == sorted(seen) and len(seen) == 4
        ko = await (await c.get("/v1/voices?language=ko-KR", headers=h)).get_json()
        assert [v["id"] for v in ko["voices"]] == ["ko-1"]
        private = await (await c.get("/v1/voices?visibility=private", headers=h)).get_json()
        assert [v["id"] for v in private["voices"]] == ["voice_alice_private"]
        found = await (await c.get("/v1/voices?search=MINJI", headers=h)).get_json()
        assert [v["id"] for v in found["voices"]] == ["ko-1"]
        await problem_of(await c.get("/v1/voices?status=bogus", headers=h), 422, "invalid_input")
        await problem_of(await c.get("/v1/voices?cursor=%21%21", headers=h), 400, "invalid_cursor")


# --- clone, patch, delete -----------------------------------------------------------------------


async def test_clone_patch_delete_publish_events(venv: VEnv) -> None:
    with trio.fail_after(10):
        c = venv.client()
        r = await post_clone(c, venv.auth("alice"),
                             {"name": "Fox", "labels": '{"accent": "irish"}'},
                             [MP3, WAV])
        assert r.status_code == 202, await r.get_data(as_text=True)
        voice = await r.get_json()
        assert voice["status"] == "processing" and voice["visibility"] == "private"
        assert voice["id"].startswith("voice_") and voice["labels"] == {"accent": "irish"}
        (upload,) = venv.manager.uploads
        assert upload["name"] == "Fox" and upload["labels"] == {"accent": "irish"}
        assert len(upload["files"]) == 2
        vid = voice["id"]
        r = await c.patch(f"/v1/voices/{vid}", headers=venv.auth("alice"),
                          json={"name": "Red Fox", "visibility": "public"})
        assert (await r.get_json())["visibility"] == "public"
        seen = await c.get(f"/v1/voices/{vid}", headers=venv.auth("bob"))
        assert (await seen.get_json())["name"] == "Red Fox"
        r = await c.delete(f"/v1/voices/{vid}", headers=venv.auth("alice"))
        assert r.status_code == 204 and venv.manager.deleted == [upload["id"]]
        await problem_of(await c.get(f"/v1/voices/{vid}", headers=venv.auth("alice")),
                         404, "voice_not_found")
        kinds = venv.events.kinds(vid)
        assert kinds == [EventKind.voice_created, EventKind.voice_updated,
                         EventKind.voice_deleted]
        assert all(e.owner == venv.ids["alice"] for e in venv.events.events)


@pytest.mark.parametrize(
    ("form", "files", "status", "code"),
    [
        ({"name": "Fox"}, [], 422, "no_audio_files"),
        ({"name": ""}, [MP3], 422, "invalid_name"),
        ({"name": "x" * 101}, [MP3], 422, "invalid_name"),
        ({"name": "Fox", "labels": "[1]"}, [MP3], 422, "invalid_labels"),
        ({"name": "Fox", "labels": '{"a": "' + "b" * 101 + '"}'}, [MP3], 422, "invalid_labels"),
        ({"name": "Fox"}, [MP3] * 26, 422, "too_many_files"),
        ({"name": "Fox"}, [("a.txt", b"hello", "text/plain")], 415, "unsupported_audio_type"),
        ({"name": "Fox"}, [("a.mp3", b"\0" * (10 * 2**20 + 1), "audio/mpeg")], 413,
         "file_too_large"),
        ({"name": "Fox"}, [("a.mp3", b"\0" * (10 * 2**20), "audio/mpeg")] * 5
         + [("b.mp3", b"\0" * 2**16, "audio/mpeg")], 413, "upload_too_large"),
        ({"name": "Fox"}, [("a.mp3", b"\0" * (9 * 2**20), "audio/mpeg")] * 6, 413,
         "payload_too_large"),  # past the route's body limit: refused while reading
        ({"name": "Fox", "visibility": "default"}, [MP3], 422, "invalid_input"),
        ({"name": "Fox"}, [MP3, ("notes.mp3", text_bytes(), "audio/mpeg")], 422,
         "invalid_audio"),
        ({"name": "Fox"}, [("tool.wav", elf_bytes(), "audio/wav"), WAV], 422, "invalid_audio"),
        ({"name": "Fox"}, [("cut.wav", clip("wav")[:44], "audio/wav")], 422, "invalid_audio"),
    ],
)
async def test_clone_limits(venv: VEnv, form: dict, files: list, status: int, code: str) -> None:
    with trio.fail_after(10):
        r = await post_clone(venv.client(), venv.auth("alice"), form, files)
        body = await problem_of(r, status, code)
        assert venv.manager.uploads == []
        if code == "invalid_audio":  # names the file that is not audio
            bad = {f[0] for f in files} - {MP3[0], WAV[0]}
            assert body["file"] in bad and body["file"] in body["detail"]


async def test_clone_with_the_embedded_engine_is_501(venv: VEnv) -> None:
    with trio.fail_after(10):
        ctx = dataclasses.replace(venv.ctx, voices=None)  # LocalVoices for the fake provider
        r = await post_clone(create_app(ctx).test_client(), venv.auth("alice"),
                             {"name": "Fox"}, [MP3])
        await problem_of(r, 501, "not_supported")


async def test_clone_without_cloning_rights_is_403(venv: VEnv) -> None:
    with trio.fail_after(10):
        venv.manager.can_clone = False
        r = await post_clone(venv.client(), venv.auth("alice"), {"name": "Fox"}, [MP3])
        await problem_of(r, 403, "cloning_not_allowed")


# --- VoiceSync on the virtual clock -------------------------------------------------------------

SETTINGS = Settings(voice_poll_s=2.0, voice_poll_max_s=60.0, voice_rescan_s=120.0)


@dataclasses.dataclass
class Sync:
    env: VEnv
    queue: MemoryVoiceSyncQueue
    t0: float

    def clock(self) -> float:
        return self.t0 + trio.current_time()

    def actor(self, queue: MemoryVoiceSyncQueue | None = None,
              faults: FaultPlan | None = None) -> VoiceSync:
        q = queue or self.queue

        class _Open:
            async def __aenter__(self) -> MemoryVoiceSyncQueue:
                return q

            async def __aexit__(self, *exc: object) -> None:
                return None

        return VoiceSync(
            settings=msgspec.structs.replace(SETTINGS, faults=faults),
            catalog=self.env.ctx.voices, jobs=self.env.store, open_queue=_Open,  # type: ignore
            submit=self.env.enqueue, events=self.env.events, clock=self.clock,
        )


async def wait_for(predicate: Any, limit_s: float) -> None:
    """Poll a condition on the virtual clock (autojump: no real time passes)."""
    with trio.fail_after(limit_s):
        while not await predicate():  # noqa: ASYNC110 - virtual time: the store has no events
            await trio.sleep(0.5)


async def cloned(env: VEnv) -> str:
    r = await post_clone(env.client(), env.auth("alice"), {"name": "Fox", "language": "en"},
                         [MP3])
    assert r.status_code == 202
    return (await r.get_json())["id"]


async def finish_preview(env: VEnv) -> None:
    """Run the submitted preview job to success, as the TTS pool would."""
    job = env.submitted[-1]
    await env.store.start_job(job.job_id)
    await env.store.finish_job(job.job_id, NewAudio(
        owner=job.owner, cache_key=job.cache_key, format=job.output_format,
        content_type="audio/mpeg", duration_s=1.0, size=3, path="p/preview.mp3"))


async def test_ready_voice_completes_with_a_preview(venv: VEnv, autojump_clock: Any) -> None:
    s = Sync(venv, MemoryVoiceSyncQueue(), time.time())
    vid = await cloned(venv)
    voice = await venv.store.get_voice(vid)
    async with trio.open_nursery() as nursery:
        stop = trio.Event()
        await nursery.start(s.actor().run, stop)
        await trio.sleep(30)  # virtual: a few polls while processing
        assert (await venv.store.get_voice(vid)).status is VoiceStatus.processing
        venv.manager.states[voice.provider_voice_id] = ProviderVoiceState(state="ready")

        async def completed() -> bool:
            return (await venv.store.get_voice(vid)).status is VoiceStatus.completed
        await wait_for(completed, 120)
        (job,) = venv.submitted
        assert job.owner == venv.ids["alice"] and job.voice_id == voice.provider_voice_id
        await finish_preview(venv)

        async def previewed() -> bool:
            return (await venv.store.get_voice(vid)).preview_audio_id is not None
        await wait_for(previewed, 60)
        assert s.queue.items == {}
        stop.set()
    body = await (await venv.client().get(f"/v1/voices/{vid}",
                                          headers=venv.auth("alice"))).get_json()
    assert body["status"] == "completed" and body["preview_url"].endswith("/preview")
    assert venv.events.kinds(vid) == [EventKind.voice_created, EventKind.voice_updated,
                                      EventKind.voice_updated]
    done = await venv.store.get_job(job.job_id)
    assert done.status is JobStatus.succeeded


async def test_not_ready_after_30_minutes_fails(venv: VEnv, autojump_clock: Any) -> None:
    s = Sync(venv, MemoryVoiceSyncQueue(), time.time())
    vid = await cloned(venv)
    async with trio.open_nursery() as nursery:
        stop = trio.Event()
        await nursery.start(s.actor().run, stop)
        await trio.sleep(29 * 60)
        assert (await venv.store.get_voice(vid)).status is VoiceStatus.processing

        async def failed() -> bool:
            return (await venv.store.get_voice(vid)).status is VoiceStatus.failed
        await wait_for(failed, 3 * 60)
        stop.set()
    voice = await venv.store.get_voice(vid)
    assert "30 minutes" in (voice.status_reason or "")
    assert trio.current_time() >= 30 * 60 and s.queue.items == {}
    assert venv.manager.polls < 60  # backoff, capped at a minute


async def test_provider_failure_fails_with_its_reason(venv: VEnv, autojump_clock: Any) -> None:
    s = Sync(venv, MemoryVoiceSyncQueue(), time.time())
    vid = await cloned(venv)
    pid = (await venv.store.get_voice(vid)).provider_voice_id
    venv.manager.states[pid] = ProviderVoiceState(state="failed", reason="too noisy")
    async with trio.open_nursery() as nursery:
        stop = trio.Event()
        await nursery.start(s.actor().run, stop)

        async def failed() -> bool:
            return (await venv.store.get_voice(vid)).status is VoiceStatus.failed
        await wait_for(failed, 60)
        stop.set()
    assert (await venv.store.get_voice(vid)).status_reason == "too noisy"


async def test_crash_mid_poll_and_restart_lose_no_voice(venv: VEnv, autojump_clock: Any) -> None:
    s = Sync(venv, MemoryVoiceSyncQueue(), time.time())
    vid = await cloned(venv)
    pid = (await venv.store.get_voice(vid)).provider_voice_id
    plan = FaultPlan().add("voice_sync.poll", RuntimeError("crash mid-poll"))
    plan.add("voice_sync.after_ready", RuntimeError("crash after the preview was submitted"))
    events: list[Any] = []
    actor = s.actor(faults=plan)
    sup = Supervisor([ChildSpec(id="voice-sync", start=actor.run)],
                     SupervisorPolicy(strategy=Strategy.one_for_one, intensity=5, period=60),
                     name="t", on_event=events.append)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await trio.sleep(20)
        assert [e.kind for e in events].count("crash") == 1
        assert vid in s.queue.items  # still tracked after the crash
        sup.request_shutdown()
    # the process "restarts" with its Redis schedule gone: rebuilt from the store
    venv.manager.states[pid] = ProviderVoiceState(state="ready")
    fresh = MemoryVoiceSyncQueue()
    events.clear()
    sup = Supervisor([ChildSpec(id="voice-sync", start=s.actor(fresh, faults=plan).run)],
                     SupervisorPolicy(strategy=Strategy.one_for_one, intensity=5, period=60),
                     name="t", on_event=events.append)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)

        async def completed() -> bool:
            v = await venv.store.get_voice(vid)
            return v.status is VoiceStatus.completed and vid in fresh.items
        await wait_for(completed, 120)
        assert [e.kind for e in events].count("crash") == 1  # after_ready, then redone
        await finish_preview(venv)

        async def previewed() -> bool:
            return (await venv.store.get_voice(vid)).preview_audio_id is not None
        await wait_for(previewed, 60)
        sup.request_shutdown()
    assert len({j.job_id for j in venv.submitted}) == 1  # the preview job is idempotent
    assert fresh.items == {}

