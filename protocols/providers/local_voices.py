"""``VoiceManager`` for local providers (the embedded engine, the built-in fake): their voices
(and variants) are the defaults; cloning is not supported (``NotSupported``, 501)."""

from __future__ import annotations

from collections.abc import Sequence

from protocols.errors import NotSupported, UnknownVoice
from protocols.messages import CloneFile, ProviderVoiceState, VoiceInfo
from protocols.ports import SpeechProvider


class LocalVoices:
    def __init__(self, speech: SpeechProvider) -> None:
        self._speech = speech
        self.provider = speech.name

    def _unsupported(self) -> NotSupported:
        return NotSupported(f"Voice cloning is not supported by the {self.provider} provider.")

    async def check_can_clone(self) -> None:
        raise self._unsupported()

    async def clone(
        self, name: str, description: str, labels: dict[str, str], files: Sequence[CloneFile]
    ) -> tuple[str, bool]:
        raise self._unsupported()

    async def voice_state(self, provider_voice_id: str) -> ProviderVoiceState:
        raise UnknownVoice(f"{self.provider} has no cloned voice {provider_voice_id!r}")

    async def delete(self, provider_voice_id: str) -> None:
        return None

    async def edit(
        self, provider_voice_id: str, *, name: str, description: str, labels: dict[str, str]
    ) -> None:
        """Nothing to change here: names and labels of voices live in Chorus's rows only
        (clones, which exist only at ElevenLabs, are edited there)."""
        return None

    async def default_voices(self) -> Sequence[VoiceInfo]:
        return list(await self._speech.voices())
