"""No paying twice after a crash: the ElevenLabs adapter finds an earlier attempt's audio in the
account's history (``GET /v1/history``, ``GET /v1/history/{id}/audio`` on the fake ElevenLabs
server) instead of generating it again; and generates when it is not there or the history fails.
Then through the whole service on the real embedded Valkey and Postgres: an actor that dies after
the paid call, before the audio is stored, and the redelivery that downloads it."""

from __future__ import annotations

import time
from typing import Any

import pytest
import trio

from protocols.domain.audio import audio_duration, parse_format
from protocols.faults import FaultPlan
from protocols.messages import SpeechParams, SynthesisRequest, VoiceSettings
from protocols.providers.elevenlabs import history
from protocols.providers.elevenlabs.models import FLASH
from tests.integration.test_cache_and_quota import counters, eleven_service, tts_calls
from tests.integration.test_elevenlabs_adapter import RACHEL, adapter, ok_calls
from tests.support.elevenlabs.server import FakeElevenLabs
from tests.support.harness import total_queue_check

LIMIT_S = 20
SERVICE_LIMIT_S = 45
MP3 = parse_format("mp3_44100_128")


def request(text: str, *, since: float | None, **params: Any) -> SynthesisRequest:
    return SynthesisRequest(
        text=text, voice_id=RACHEL, language="en", output_format=MP3.name,
        params=SpeechParams(model_id=FLASH, **params), previous_attempt_since=since,
    )


def an_hour_ago() -> float:
    return time.time() - 3600


async def test_a_redelivery_downloads_the_earlier_generation_instead_of_paying(
    fake_elevenlabs, tmp_path
):
    fake = fake_elevenlabs
    text = "Paid for once, before the crash."
    since = time.time()
    with trio.fail_after(LIMIT_S):
        async with adapter(fake, tmp_path) as el:
            first = await el.synthesize(request(text, since=None))
            billed = fake.stats()["characters_billed"]
            again = await el.synthesize(request(text, since=since))
            stats = el.statistics()
    assert len(ok_calls(fake)) == 1 and fake.stats()["characters_billed"] == billed
    assert again.from_history and not first.from_history
    assert again.audio == first.audio and again.request_ids == first.request_ids
    assert again.character_cost == len(text)  # what that one generation cost
    assert again.duration_s == pytest.approx(audio_duration(again.audio, MP3), abs=0.01)
    assert stats.history_reuses == 1 and stats.history_failures == 0
    endpoints = fake.stats()["endpoints"]
    assert endpoints["GET /v1/history"] == 1
    assert endpoints["GET /v1/history/{history_item_id}/audio"] == 1


async def test_a_first_attempt_never_looks_in_the_history(fake_elevenlabs, tmp_path):
    fake = fake_elevenlabs
    with trio.fail_after(LIMIT_S):
        async with adapter(fake, tmp_path) as el:
            await el.synthesize(request("Asked twice, no crash.", since=None))
            again = await el.synthesize(request("Asked twice, no crash.", since=None))
    assert not again.from_history and len(ok_calls(fake)) == 2
    assert "GET /v1/history" not in fake.stats()["endpoints"]


@pytest.mark.parametrize("case", ["other text", "other settings", "before the job", "deleted"])
async def test_what_the_history_does_not_hold_is_generated(fake_elevenlabs, tmp_path, case):
    fake = fake_elevenlabs
    text = "Generated before, in some way."
    with trio.fail_after(LIMIT_S):
        async with adapter(fake, tmp_path) as el:
            await el.synthesize(request(text, since=None,
                                        voice_settings=VoiceSettings(stability=0.3)))
            since = an_hour_ago()
            wanted = request(text, since=since, voice_settings=VoiceSettings(stability=0.3))
            if case == "other text":
                wanted = request(text + " More.", since=since,
                                 voice_settings=VoiceSettings(stability=0.3))
            elif case == "other settings":
                wanted = request(text, since=since, voice_settings=VoiceSettings(stability=0.8))
            elif case == "before the job":  # the item is older than the job asking
                wanted = request(text, since=time.time() + 2 * history.CLOCK_MARGIN_S,
                                 voice_settings=VoiceSettings(stability=0.3))
            else:
                fake.clear_history()
            result = await el.synthesize(wanted)
            stats = el.statistics()
    assert not result.from_history and len(ok_calls(fake)) == 2
    assert stats.history_reuses == 0 and stats.history_failures == 0


async def test_a_long_text_is_reused_only_when_every_part_is_found(fake_elevenlabs, tmp_path):
    fake = fake_elevenlabs
    fake.model_limits = {FLASH: 60}
    sentences = [f"This is sentence number {n} of the story." for n in range(1, 5)]
    text = " ".join(sentences)
    with trio.fail_after(LIMIT_S):
        async with adapter(fake, tmp_path) as el:
            first = await el.synthesize(request(text, since=None))
            assert len(ok_calls(fake)) == 4
            whole = await el.synthesize(request(text, since=an_hour_ago()))
            assert whole.from_history and len(ok_calls(fake)) == 4  # four parts downloaded
            assert whole.request_ids == first.request_ids
            with fake._lock:  # one part's item is gone (deleted at ElevenLabs)
                fake._history = [h for h in fake._history if h.text != sentences[2]]
            partial = await el.synthesize(request(text, since=an_hour_ago()))
    assert not partial.from_history and len(ok_calls(fake)) == 8  # all generated again
    assert audio_duration(whole.audio, MP3) == pytest.approx(
        audio_duration(first.audio, MP3), abs=0.05)


async def test_the_history_is_read_page_by_page(fake_elevenlabs, tmp_path, monkeypatch):
    fake = fake_elevenlabs
    monkeypatch.setattr(history, "PAGE_SIZE", 2)
    texts = [f"Line {n} of a busy account." for n in range(5)]
    with trio.fail_after(LIMIT_S):
        async with adapter(fake, tmp_path) as el:
            for text in texts:
                await el.synthesize(request(text, since=None))
            oldest = await el.synthesize(request(texts[0], since=an_hour_ago()))
    assert oldest.from_history and len(ok_calls(fake)) == 5
    assert fake.stats()["endpoints"]["GET /v1/history"] == 3  # 2 + 2 + 1, newest first


@pytest.mark.parametrize("path", ["/v1/history", "audio"])
async def test_a_failing_history_falls_back_to_generating(fake_elevenlabs, tmp_path, path):
    fake = fake_elevenlabs
    text = "The history is down today."
    with trio.fail_after(LIMIT_S):
        async with adapter(fake, tmp_path, provider_max_attempts=3) as el:
            await el.synthesize(request(text, since=None))
            if path == "audio":
                item_id = fake.history[0].history_item_id
                fake.inject(500, "internal_server_error", times=None,
                            path_prefix=f"/v1/history/{item_id}/audio")
            else:
                fake.inject(503, "service_unavailable", times=None, path_prefix=path)
            result = await el.synthesize(request(text, since=an_hour_ago()))
            stats = el.statistics()
    assert not result.from_history and result.audio and len(ok_calls(fake)) == 2
    assert stats.history_failures == 1 and stats.history_reuses == 0
    assert stats.backoffs == 0  # tried once: a broken history costs one request


# --- through the service, on the real embedded Valkey and Postgres ------------------------------


async def _job_after_a_fault(
    redis_url: Any, store: Any, tmp_path: Any, fake: FakeElevenLabs, point: str, text: str,
) -> tuple[dict[str, Any], dict[str, int], bytes]:
    """One job whose actor dies once at ``point``; its final state, the counters, its audio."""
    plan = FaultPlan(3).add(point, RuntimeError(f"injected: the worker dies at {point}"))
    async with eleven_service(redis_url, store, tmp_path, fake, faults=plan) as svc:
        submitted = await svc.submit(text)
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]
        job = (await svc.wait_done([job_id]))[job_id]
        stats = await counters(svc)
        audio = await svc.client.get(job["audio_url"]) if job.get("audio_url") else None
    await total_queue_check(store, redis_url, svc.service.settings, svc.accepted)
    assert plan.fired == [point]
    return job, stats, audio.content if audio is not None else b""


async def test_a_job_paid_for_before_its_worker_died_is_not_paid_again(
    redis_url, store, tmp_path, fake_elevenlabs
):
    fake = fake_elevenlabs
    text = "Generated, then the worker died before storing it."
    with trio.fail_after(SERVICE_LIMIT_S):
        job, stats, audio = await _job_after_a_fault(
            redis_url, store, tmp_path, fake, "tts.after_synth", text)
    assert job["status"] == "succeeded" and job["attempts"] == 2
    assert tts_calls(fake, text) == 1  # the redelivery downloaded it from the history
    assert stats["provider_calls"] == 1 and stats["history_reuses"] == 1
    assert job["request_ids"] == [fake.calls[0].request_id]
    assert audio_duration(audio, MP3) > 0.1  # the stored clip decodes
    assert fake.stats()["endpoints"]["GET /v1/history/{history_item_id}/audio"] == 1


async def test_a_redelivered_job_never_generated_is_generated(
    redis_url, store, tmp_path, fake_elevenlabs
):
    fake = fake_elevenlabs
    text = "The worker died before asking for this one."
    with trio.fail_after(SERVICE_LIMIT_S):
        job, stats, audio = await _job_after_a_fault(
            redis_url, store, tmp_path, fake, "tts.before_synth", text)
    assert job["status"] == "succeeded" and job["attempts"] == 2
    assert fake.stats()["endpoints"]["GET /v1/history"] == 1  # looked, found nothing
    assert tts_calls(fake, text) == 1
    assert stats["provider_calls"] == 1 and stats.get("history_reuses", 0) == 0
    assert audio_duration(audio, MP3) > 0.1


async def test_a_history_outage_never_fails_the_redelivered_job(
    redis_url, store, tmp_path, fake_elevenlabs
):
    fake = fake_elevenlabs
    fake.inject(500, "internal_server_error", times=None, path_prefix="/v1/history")
    text = "Generated, the worker died, and the history is down."
    with trio.fail_after(SERVICE_LIMIT_S):
        job, stats, audio = await _job_after_a_fault(
            redis_url, store, tmp_path, fake, "tts.after_synth", text)
    assert job["status"] == "succeeded" and job["attempts"] == 2
    assert tts_calls(fake, text) == 2  # paid twice: the history could not say otherwise
    assert stats["provider_calls"] == 2 and stats.get("history_reuses", 0) == 0
    assert audio_duration(audio, MP3) > 0.1
