"""Word timings and captions end to end (real Valkey and Postgres, the whole service): the
embedded espeak-ng engine's word events stored with the audio, ``GET /v1/jobs/{id}/alignment``
and the captions, SSML breaks (silence, not charged) and phoneme hints, the typed errors."""

from __future__ import annotations

import io
from typing import Any

import av
import srt
import trio
import webvtt

from protocols.errors import InvalidInput
from protocols.providers.elevenlabs.provider import ElevenLabsProvider
from protocols.providers.espeak import EspeakProvider
from protocols.providers.fake import FakeProvider
from protocols.settings import Secret
from tests.support.elevenlabs.server import FakeElevenLabs
from tests.support.harness import make_settings, running_service, total_queue_check

SENTENCE = "The quick brown fox jumps over 12 lazy dogs."
WITH_BREAK = 'The quick brown fox <break time="1s"/> jumps over 12 lazy dogs.'


def decoded_seconds(data: bytes) -> float:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        return sum(frame.samples for frame in container.decode(stream)) / stream.rate


def check_alignment(body: dict[str, Any], spoken: str, clip_s: float) -> None:
    """Monotonic, one word per spoken word, ending within 100 ms of the decoded clip."""
    words = body["words"]
    assert [w["text"] for w in words] == spoken.split()
    starts = body["character_start_times_seconds"]
    ends = body["character_end_times_seconds"]
    assert "".join(body["characters"]) == spoken
    assert len(starts) == len(ends) == len(spoken)
    assert all(a <= b for a, b in zip(starts, starts[1:], strict=False))
    assert all(a <= b for a, b in zip(ends, ends[1:], strict=False))
    assert all(s <= e for s, e in zip(starts, ends, strict=True))
    for a, b in zip(words, words[1:], strict=False):
        assert a["start_s"] <= a["end_s"] <= b["start_s"] <= b["end_s"]
    assert words[0]["start_s"] < 0.3
    assert abs(words[-1]["end_s"] - clip_s) <= 0.1, (words[-1], clip_s)
    assert abs(ends[-1] - clip_s) <= 0.1


async def test_embedded_engine_timings_captions_and_breaks(
    redis_url: str, store: Any, tmp_path: Any
) -> None:
    settings = make_settings(tmp_path)
    with trio.fail_after(60):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, provider=EspeakProvider()
        ) as svc:
            plain = await svc.submit(SENTENCE, voice_id="en-us")
            paused = await svc.submit(WITH_BREAK, voice_id="en-us")
            hinted = await svc.submit(
                'Say <phoneme alphabet="ipa" ph="təˈmɑːtoʊ">tomato</phoneme> if a < b.',
                voice_id="en-us",
            )
            assert {r.status_code for r in (plain, paused, hinted)} == {202}, paused.text
            jobs = await svc.wait_done(svc.accepted)
            assert all(j["status"] == "succeeded" for j in jobs.values()), jobs
            # the break is not charged: the same characters as the text without it
            assert jobs[paused.json()["id"]]["characters"] == len(SENTENCE)
            assert jobs[hinted.json()["id"]]["characters"] == len("Say tomato if a < b.")

            clips = {}
            for job_id, job in jobs.items():
                audio = await svc.client.get(f"/v1/audio/{job['audio_id']}")
                clips[job_id] = decoded_seconds(audio.content)
                r = await svc.client.get(f"/v1/jobs/{job_id}/alignment")
                assert r.status_code == 200, r.text
                body = r.json()
                assert body["source"] == "engine" and body["job_id"] == job_id
                spoken = SENTENCE if job_id != hinted.json()["id"] else "Say tomato if a < b."
                check_alignment(body, spoken, clips[job_id])

            # about one second more audio, and the words after the break one second later
            assert 0.9 < clips[paused.json()["id"]] - clips[plain.json()["id"]] < 1.1
            before = (await svc.client.get(f"/v1/jobs/{plain.json()['id']}/alignment")).json()
            after = (await svc.client.get(f"/v1/jobs/{paused.json()['id']}/alignment")).json()
            jumps = [w for w in after["words"] if w["text"] == "jumps"][0]
            fox = [w for w in after["words"] if w["text"] == "fox"][0]
            assert jumps["start_s"] - fox["end_s"] >= 0.95
            plain_jumps = [w for w in before["words"] if w["text"] == "jumps"][0]
            assert 0.9 < jumps["start_s"] - plain_jumps["start_s"] < 1.1

            # captions parse with the libraries, cover every word in order, within the clip
            job_id = paused.json()["id"]
            r = await svc.client.get(f"/v1/jobs/{job_id}/captions.vtt")
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/vtt")
            cues = list(webvtt.from_buffer(io.StringIO(r.text)))
            assert len(cues) >= 2  # the break ends a cue
            assert " ".join(c.text for c in cues).split() == SENTENCE.split()
            assert cues[-1].end_in_seconds <= clips[job_id] + 0.1
            r = await svc.client.get(f"/v1/jobs/{job_id}/captions.srt")
            assert r.status_code == 200
            subs = list(srt.parse(r.text))
            assert " ".join(s.content for s in subs).split() == SENTENCE.split()
            assert [s.start for s in subs] == sorted(s.start for s in subs)

            # another user sees none of it
            _, other = await store.create_user("timings-other")
            for path in ("alignment", "captions.vtt", "captions.srt"):
                r = await svc.client.get(f"/v1/jobs/{job_id}/{path}",
                                         headers={"Authorization": f"Bearer {other}"})
                assert r.status_code == 404, r.text

            # bad markup is a typed 422, never read aloud
            r = await svc.submit('Wait <break time="30s"/> for it.', voice_id="en-us")
            assert r.status_code == 422 and r.json()["code"] == "invalid_markup", r.text
            r = await svc.submit('Wait <break time="soon"/> for it.', voice_id="en-us")
            assert r.status_code == 422 and r.json()["code"] == "invalid_markup", r.text
        await total_queue_check(store, redis_url, settings, svc.accepted)


async def test_timings_of_a_job_without_audio_and_a_cache_hit(
    redis_url: str, store: Any, tmp_path: Any
) -> None:
    settings = make_settings(tmp_path)
    provider = FakeProvider()
    provider.gate = trio.Event()
    with trio.fail_after(30):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as svc:
            r = await svc.submit("Three little words", voice_id="fake-en")
            job_id = r.json()["id"]
            r = await svc.client.get(f"/v1/jobs/{job_id}/alignment")
            assert r.status_code == 409 and r.json()["code"] == "not_ready", r.text
            r = await svc.client.get(f"/v1/jobs/{job_id}/captions.vtt")
            assert r.status_code == 409
            provider.gate.set()
            await svc.wait_done([job_id])
            first = (await svc.client.get(f"/v1/jobs/{job_id}/alignment")).json()
            assert [w["text"] for w in first["words"]] == ["Three", "little", "words"]
            # a cache hit (no provider call) links the same clip, with its timings
            calls = provider.calls
            hit = await svc.submit("Three little words", voice_id="fake-en")
            assert hit.status_code == 200 and hit.json()["cached"] is True, hit.text
            again = await svc.client.get(f"/v1/jobs/{hit.json()['id']}/alignment")
            assert again.status_code == 200
            assert again.json()["words"] == first["words"] and again.json()["source"] == "engine"
            assert provider.calls == calls

            provider.script.append(InvalidInput("the provider refuses this text"))
            failed = await svc.submit("This one fails", voice_id="fake-en")
            done = await svc.wait_done([failed.json()["id"]])
            assert done[failed.json()["id"]]["status"] == "failed"
            r = await svc.client.get(f"/v1/jobs/{failed.json()['id']}/alignment")
            assert r.status_code == 409 and r.json()["code"] == "no_audio", r.text
        await total_queue_check(store, redis_url, settings, svc.accepted)



async def test_elevenlabs_alignment_from_with_timestamps(
    redis_url: str, store: Any, fake_elevenlabs: FakeElevenLabs, tmp_path: Any
) -> None:
    fake = fake_elevenlabs
    settings = make_settings(
        tmp_path, elevenlabs_api_key=Secret("test-key"), elevenlabs_base_url=fake.base_url,
        elevenlabs_timeout_s=5.0,
    )
    text = 'Good night <break time="0.5s"/> little fox, sleep well.'
    spoken = "Good night little fox, sleep well."
    with trio.fail_after(40):
        async with ElevenLabsProvider.open(settings) as provider, running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as svc:
            r = await svc.submit(text)
            assert r.status_code == 202, r.text
            job = (await svc.wait_done([r.json()["id"]]))[r.json()["id"]]
            assert job["status"] == "succeeded", job
            assert job["characters"] == len(spoken)  # the break is not charged to the user
            (call,) = [c for c in fake.calls if c.text == text]  # sent as written: native SSML
            assert call.endpoint == "with-timestamps"
            audio = await svc.client.get(f"/v1/audio/{job['audio_id']}")
            r = await svc.client.get(f"/v1/jobs/{job['id']}/alignment")
            assert r.status_code == 200 and r.json()["source"] == "engine", r.text
            check_alignment(r.json(), spoken, decoded_seconds(audio.content))
            r = await svc.client.get(f"/v1/jobs/{job['id']}/captions.srt")
            assert " ".join(s.content for s in srt.parse(r.text)) == spoken
        await total_queue_check(store, redis_url, settings, svc.accepted)


async def test_a_streamed_job_keeps_the_engine_timings(
    redis_url: str, store: Any, tmp_path: Any
) -> None:
    """A ``stream`` job on the embedded engine, made part by part: its break is silence, its
    phoneme hint read, and its stored alignment is the engine's (not estimated), monotonic and
    ending with the clip; charged as the same text made whole."""
    settings = make_settings(tmp_path)
    text = ('Say <phoneme alphabet="ipa" ph="təˈmɑːtoʊ">tomato</phoneme> first. '
            + WITH_BREAK + " Then the fox went home through the tall grass, singing a song.")
    spoken = "Say tomato first. " + SENTENCE + " Then the fox went home through the tall" \
        " grass, singing a song."
    with trio.fail_after(60):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, provider=EspeakProvider()
        ) as svc:
            r = await svc.submit(text, voice_id="en-us", stream=True)
            assert r.status_code == 202, r.text
            job_id = r.json()["id"]
            async with svc.client.stream("GET", f"/v1/jobs/{job_id}/stream") as live:
                assert live.status_code == 200
                body = b"".join([chunk async for chunk in live.aiter_raw()])
            job = (await svc.wait_done([job_id]))[job_id]
            assert job["status"] == "succeeded", job
            assert job["characters"] == len(spoken)  # the break and the tags are not charged
            audio = (await svc.client.get(f"/v1/audio/{job['audio_id']}")).content
            assert body == audio
            r = await svc.client.get(f"/v1/jobs/{job_id}/alignment")
            assert r.status_code == 200 and r.json()["source"] == "engine", r.text
            check_alignment(r.json(), spoken, decoded_seconds(audio))
            words = r.json()["words"]
            fox = [w for w in words if w["text"] == "fox"][0]
            jumps = [w for w in words if w["text"] == "jumps"][0]
            assert jumps["start_s"] - fox["end_s"] >= 0.95  # the break, as silence
        await total_queue_check(store, redis_url, settings, svc.accepted)
