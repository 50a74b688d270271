"""A built-in stand-in provider with configurable latency (``run.py bench`` and tests).

It does no synthesis: every job gets the same short clip of silence in the asked format, encoded
once per format. It counts calls and the peak of concurrent calls, like a metered provider.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from protocols.domain.audio import FORMATS, encode_pcm, parse_format, silence
from protocols.errors import UnknownVoice
from protocols.messages import SynthesisRequest, SynthesisResult, VoiceInfo
from protocols.providers.base import LocalProvider

CLIP_S = 0.1
RATE = 22050

_VOICES = (
    VoiceInfo(voice_id="fake-en", name="Fake English", language="en", provider="fake"),
    VoiceInfo(voice_id="fake-ko", name="Fake Korean", language="ko", provider="fake"),
)


class FakeProvider(LocalProvider):
    """Stands in for a metered remote provider (so it goes through the global semaphore)."""

    name = "fake"
    model_id = "fake"
    shared_account = True

    def __init__(self, latency_s: float = 0.0) -> None:
        self.latency_s = latency_s
        self.calls = 0
        self.active = 0
        self.peak = 0
        self._clips: dict[str, bytes] = {}

    def formats(self) -> frozenset[str]:
        return frozenset(FORMATS)

    async def voices(self) -> Sequence[VoiceInfo]:
        return _VOICES

    async def resolve_voice(self, voice_id: str | None, language: str | None) -> VoiceInfo:
        for voice in _VOICES:
            if voice.voice_id == voice_id or (voice_id is None and voice.language == language):
                return voice
        if voice_id is None:
            return _VOICES[0]
        raise UnknownVoice(f"voice {voice_id!r} does not exist")

    async def synthesize(self, request: SynthesisRequest) -> SynthesisResult:
        fmt = parse_format(request.output_format)
        self.calls += 1
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            if self.latency_s:
                await trio.sleep(self.latency_s)
            clip = self._clips.get(fmt.name)
            if clip is None:
                clip = await trio.to_thread.run_sync(
                    encode_pcm, silence(CLIP_S, RATE), RATE, fmt
                )
                self._clips[fmt.name] = clip
        finally:
            self.active -= 1
        return SynthesisResult(
            audio=clip, content_type=fmt.content_type, duration_s=CLIP_S,
            characters=len(request.text),
        )
