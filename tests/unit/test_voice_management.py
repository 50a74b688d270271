"""Voice management on in-memory fakes: an edit kept consistent with the provider (refused,
unknown outcome, a store failure after the provider took it), a voice's default settings under
a job's, the default model and the supported languages as pure rules and settings, and
VoiceSync's preview rules on trio's virtual clock (quota, a newer preview, a failed one)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest
import trio

from protocols.domain.languages import check_language, is_supported
from protocols.domain.voices import job_settings
from protocols.errors import (
    ConfigError,
    ProviderRejected,
    ProviderUnavailable,
    StoreUnavailable,
    UnsupportedLanguage,
)
from protocols.events import EventKind
from protocols.messages import JobRequest, JobStatus, ProviderVoiceState, Voice, VoiceSettings
from protocols.providers.elevenlabs.models import FLASH, MULTILINGUAL, STATIC_MODELS, pick_model
from protocols.settings import Settings
from tests.support.fake_voices import MemoryVoiceSyncQueue
from tests.unit.test_voices import (
    Sync,
    VEnv,
    add_voice,
    cloned,
    finish_preview,
    make_venv,
    wait_for,
)
from tests.unit.test_web import problem_of
from web.app import create_app


@pytest.fixture
async def venv() -> VEnv:
    return await make_venv()


# --- editing: the provider and the row stay consistent -------------------------------------------


async def test_a_change_the_provider_refuses_changes_nothing(venv: VEnv) -> None:
    with trio.fail_after(10):
        vid = await add_voice(venv, "alice")
        venv.manager.edit_errors.append(ProviderRejected("name not allowed"))
        r = await venv.client().patch(f"/v1/voices/{vid}", json={"name": "Rude"},
                                      headers=venv.auth("alice"))
        await problem_of(r, 502, "provider_rejected")
        assert venv.manager.edits == []  # refused for sure: nothing to put back
        assert (await venv.store.get_voice(vid)).name == "alice private"
        assert venv.events.kinds(vid) == []


async def test_a_store_failure_after_the_provider_took_the_change_puts_it_back(
    venv: VEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(10):
        vid = await add_voice(venv, "alice")
        catalog = venv.ctx.voices
        assert catalog is not None

        async def down(*args: Any, **kwargs: Any) -> None:
            raise StoreUnavailable("database away")

        monkeypatch.setattr(venv.store, "update_voice", down)
        with pytest.raises(StoreUnavailable):
            await catalog.edit(vid, venv.ids["alice"], name="Vixen", labels={"accent": "x"})
        sent, restored = venv.manager.edits
        assert (sent["name"], sent["labels"]) == ("Vixen", {"accent": "x"})
        assert (restored["name"], restored["labels"]) == ("alice private", {})
        assert (await venv.store.get_voice(vid)).name == "alice private"


async def test_an_unknown_outcome_at_the_provider_is_put_back_too(venv: VEnv) -> None:
    with trio.fail_after(10):
        vid = await add_voice(venv, "alice")
        venv.manager.edit_errors.append(ProviderUnavailable("timed out"))
        r = await venv.client().patch(f"/v1/voices/{vid}", json={"description": "new"},
                                      headers=venv.auth("alice"))
        await problem_of(r, 502, "provider_unavailable")
        (restored,) = venv.manager.edits
        assert restored["name"] == "alice private" and restored["description"] == ""
        assert (await venv.store.get_voice(vid)).description == ""


async def test_settings_and_visibility_stay_in_chorus(venv: VEnv) -> None:
    with trio.fail_after(10):
        vid = await add_voice(venv, "alice")
        body = {"visibility": "public", "voice_settings": {"style": 0.2}}
        r = await venv.client().patch(f"/v1/voices/{vid}", json=body, headers=venv.auth("alice"))
        assert r.status_code == 200
        view = await r.get_json()
        assert view["voice_settings"] == {"style": 0.2} and view["visibility"] == "public"
        assert venv.manager.edits == []
        for bad in ({"stability": -1}, {"speed": 3}, {"loudness": 1}, "fast"):
            r = await venv.client().patch(f"/v1/voices/{vid}", json={"voice_settings": bad},
                                          headers=venv.auth("alice"))
            await problem_of(r, 422, "invalid_input")


# --- default settings, model and languages ----------------------------------------------------


def test_a_jobs_settings_win_field_by_field_over_the_voices() -> None:
    defaults = VoiceSettings(stability=0.3, speed=1.1)
    assert job_settings(None, defaults) == defaults
    assert job_settings(VoiceSettings(stability=0.9), None) == VoiceSettings(stability=0.9)
    assert job_settings(VoiceSettings(stability=0.9, style=0.5), defaults) == VoiceSettings(
        stability=0.9, style=0.5, speed=1.1)
    assert job_settings(None, None) is None


async def test_jobs_with_a_voice_get_its_defaults_in_params_and_cache_key(venv: VEnv) -> None:
    with trio.fail_after(10):
        vid = await add_voice(venv, "alice")
        intake = venv.ctx.intake
        alice = venv.ids["alice"]
        plain = await intake.settle(JobRequest(text="Hello.", voice_id=vid), alice)
        await venv.store.update_voice(vid, alice, voice_settings=VoiceSettings(speed=0.8))
        tuned = await intake.settle(JobRequest(text="Hello.", voice_id=vid), alice)
        assert plain.params.voice_settings is None
        assert tuned.params.voice_settings == VoiceSettings(speed=0.8)
        assert tuned.cache_key != plain.cache_key


def test_the_default_model_is_taken_when_it_speaks_the_language() -> None:
    models = dict(STATIC_MODELS)

    def pick(**kw: Any) -> str:
        kw.setdefault("language", "en")
        return pick_model(models, characters=20, text="Hello there.", **kw).model_id

    assert pick() == FLASH
    assert pick(default_model_id=MULTILINGUAL) == MULTILINGUAL
    assert pick(default_model_id=MULTILINGUAL, model_id=FLASH) == FLASH  # the request names one
    assert pick(default_model_id="eleven_flash_v2", language="ko") == FLASH  # English only
    assert pick(default_model_id="no_such_model") == FLASH


def test_supported_languages_match_whole_tags_or_primary_subtags() -> None:
    assert is_supported("en-US", ("en", "ko")) and is_supported("ko_KR", ("en", "ko"))
    assert is_supported("pt-BR", ("pt-br",)) and not is_supported("pt-PT", ("pt-br",))
    assert is_supported("fr", ()) and is_supported(None, ("en",))
    with pytest.raises(UnsupportedLanguage) as caught:
        check_language("fr", ("en", "ko"))
    assert caught.value.extra["supported"] == ["en", "ko"]


def test_settings_from_the_environment() -> None:
    s = Settings.from_env({"ELEVENLABS_MODEL_ID": "eleven_v3",
                           "CHORUS_SUPPORTED_LANGUAGES": " en , ko_KR,EN,pt-BR "})
    assert s.elevenlabs_model_id == "eleven_v3"
    assert s.supported_languages == ("en", "ko-kr", "pt-br")
    defaults = Settings.from_env({})
    assert defaults.elevenlabs_model_id is None and defaults.supported_languages == ()
    with pytest.raises(ConfigError):
        Settings.from_env({"ELEVENLABS_MODEL_ID": "  "})


async def test_a_language_outside_the_list_is_refused_at_submit(venv: VEnv) -> None:
    with trio.fail_after(10):
        venv.ctx.intake.settings = Settings(max_text_chars=100, supported_languages=("en",))
        r = await venv.client().post("/v1/jobs", json={"text": "Hallo.", "language": "de"},
                                     headers=venv.auth("alice"))
        await problem_of(r, 422, "unsupported_language")
        assert venv.submitted == []


# --- VoiceSync and previews on the virtual clock ------------------------------------------------


async def test_over_quota_the_first_preview_is_skipped_and_the_voice_completed(
    venv: VEnv, autojump_clock: Any
) -> None:
    s = Sync(venv, MemoryVoiceSyncQueue(), time.time())
    await venv.store.set_quota("alice", 5)
    vid = await cloned(venv)
    pid = (await venv.store.get_voice(vid)).provider_voice_id
    venv.manager.states[pid] = ProviderVoiceState(state="ready")
    async with trio.open_nursery() as nursery:
        stop = trio.Event()
        await nursery.start(s.actor().run, stop)

        async def completed() -> bool:
            return (await venv.store.get_voice(vid)).status.value == "completed"
        await wait_for(completed, 60)
        await trio.sleep(10)
        stop.set()
    voice = await venv.store.get_voice(vid)
    assert voice.preview_job_id is None and voice.preview_audio_id is None
    assert venv.submitted == [] and venv.store.jobs == {} and s.queue.items == {}
    skipped = [e for e in venv.events.events if e.subject == vid
               and e.kind is EventKind.voice_updated and "preview_skipped" in e.data]
    assert skipped[0].data["preview_skipped"] == "quota_exceeded"


async def test_only_the_latest_preview_asked_for_is_linked(
    venv: VEnv, autojump_clock: Any
) -> None:
    """Two previews asked for one after the other: the older job's audio, finishing later, is
    not linked over the newer; a preview job that fails leaves the voice as it was."""
    s = Sync(venv, MemoryVoiceSyncQueue(), time.time())
    vid = await add_voice(venv, "alice")
    alice = venv.ids["alice"]

    async def track(voice: Voice) -> None:  # what the front door does (Service.track_voice)
        await s.queue.track(voice.id, s.clock(), s.clock() + 1800, state="preview")

    client = create_app(dataclasses.replace(venv.ctx, track_voice=track)).test_client()
    async with trio.open_nursery() as nursery:
        stop = trio.Event()
        await nursery.start(s.actor().run, stop)
        ids = []
        for text in ("The first take.", "The second take."):
            r = await client.post(f"/v1/voices/{vid}/preview", json={"text": text},
                                  headers=venv.auth("alice"))
            assert r.status_code == 202
            ids.append((await r.get_json())["job"]["id"])
        assert (await venv.store.get_voice(vid)).preview_job_id == ids[1]
        assert s.queue.items[vid].state == "preview"
        first, second = venv.submitted
        venv.submitted[:] = [second, first]  # the first finishes last
        await finish_preview(venv)
        await trio.sleep(30)
        voice = await venv.store.get_voice(vid, alice)
        assert voice.preview_audio_id is None and voice.preview_pending
        venv.submitted[:] = [second]
        await finish_preview(venv)

        async def linked() -> bool:
            return not (await venv.store.get_voice(vid)).preview_pending
        await wait_for(linked, 60)
        voice = await venv.store.get_voice(vid)
        job = await venv.store.get_job(ids[1])
        assert voice.preview_audio_id == job.audio_id and voice.preview_audio_job_id == ids[1]

        r = await client.post(f"/v1/voices/{vid}/preview", json={"text": "A third take."},
                              headers=venv.auth("alice"))
        third = (await r.get_json())["job"]["id"]
        await venv.store.fail_job(third, "synthesis_failed", "the engine broke")

        async def dropped() -> bool:
            return not (await venv.store.get_voice(vid)).preview_pending
        await wait_for(dropped, 60)
        stop.set()
    voice = await venv.store.get_voice(vid)
    assert voice.preview_audio_id == job.audio_id and voice.preview_job_id == ids[1]
    assert (await venv.store.get_job(third)).status is JobStatus.failed
    assert s.queue.items == {}
