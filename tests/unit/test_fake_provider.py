"""The built-in fake provider: real audio, deterministic per request, and its test seams."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from protocols.domain.audio import audio_duration, parse_format
from protocols.errors import ProviderError, UnknownVoice
from protocols.messages import SynthesisRequest
from protocols.providers.fake import CLIP_S, KEPT_REQUESTS, FakeProvider

CAP_S = 10.0


@pytest.mark.parametrize(
    "name", ["mp3_44100_128", "opus_48000_64", "wav_16000", "pcm_24000", "ulaw_8000"]
)
async def test_audio_decodes_to_its_duration_and_repeats_byte_for_byte(name: str) -> None:
    provider, fmt = FakeProvider(), parse_format(name)
    request = SynthesisRequest(text="Hello there.", voice_id="fake-en", output_format=name)
    with trio.fail_after(CAP_S):
        one, two = await provider.synthesize(request), await provider.synthesize(request)
    assert one == two and one.content_type == fmt.content_type and one.characters == 12
    assert audio_duration(one.audio, fmt) == pytest.approx(one.duration_s, abs=0.01)
    assert one.duration_s == CLIP_S
    assert provider.calls == 2 and list(provider.requests) == [request, request]


async def test_voices_resolve_by_id_or_language_else_unknown() -> None:
    provider = FakeProvider()
    with trio.fail_after(CAP_S):
        await check_voices(provider)


async def check_voices(provider: FakeProvider) -> None:
    assert (await provider.resolve_voice(None, None)).voice_id == "fake-en"
    assert (await provider.resolve_voice(None, "ko-KR")).voice_id == "fake-ko"
    with pytest.raises(UnknownVoice):
        await provider.resolve_voice(None, "xx")
    with pytest.raises(UnknownVoice):
        await provider.synthesize(SynthesisRequest(text="hi", voice_id="nope"))


async def test_script_gate_latency_and_counters(autojump_clock: Any) -> None:
    with trio.fail_after(60):  # virtual seconds: a hang fails, it never sticks
        await check_seams(FakeProvider(latency_s=2.0))


async def check_seams(provider: FakeProvider) -> None:
    provider.script.extend([ProviderError("once"), 1.0])
    request = SynthesisRequest(text="hi", voice_id="fake-en")
    with pytest.raises(ProviderError):
        await provider.synthesize(request)
    start = trio.current_time()
    await provider.synthesize(request)  # the scripted second plus the latency
    assert trio.current_time() - start == pytest.approx(3.0)

    provider.gate = trio.Event()
    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(provider.synthesize, request)
        await trio.testing.wait_all_tasks_blocked()
        assert provider.active == 3
        provider.gate.set()
    assert (provider.calls, provider.active, provider.peak) == (5, 0, 3)


async def test_kept_requests_are_bounded() -> None:
    provider = FakeProvider()
    with trio.fail_after(CAP_S):
        for i in range(KEPT_REQUESTS + 5):
            await provider.synthesize(SynthesisRequest(text=str(i), voice_id="fake-en"))
    assert len(provider.requests) == KEPT_REQUESTS and provider.requests[0].text == "5"
    assert provider.calls == KEPT_REQUESTS + 5
