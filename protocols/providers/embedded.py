"""The embedded provider: the offline engines of this process behind one ``SpeechProvider``,
the engine chosen per voice.

Engines are given in order of preference: Piper (neural, English) first when it is installed,
espeak-ng (every other language, ~140 voices) last. The registry builds it
(``protocols/providers/__init__.py``: ``CHORUS_PROVIDER=embedded``, the default without an
ElevenLabs key); ``CHORUS_PROVIDER=espeak`` is espeak-ng alone.

- **Voices**: every engine's, concatenated (ids do not collide: Piper names its voices
  ``en_US-joe-medium``, espeak-ng ``en-us``, ``ko``, ``en-us+f3``).
- **A voice id** goes to the first engine that has it; that engine settles the job's model
  (``piper`` or ``espeak-ng``, part of the cache key) and makes the audio.
- **No voice**: the first engine that speaks the language (English → Piper when installed;
  ``ko`` → espeak-ng), else the last engine's answer (its error for a language nobody speaks);
  no language either → the first engine's default voice.

Why a composite rather than a registry entry per engine: one process has one provider (one
name in the cache key and the voices table, one voice manager), and a job in Korean and one in
English must both work without the client knowing which engine speaks what. Each engine keeps
its own threading rules (espeak-ng: one call at a time; Piper: a limiter per core).
"""

from __future__ import annotations

from collections.abc import Sequence

from protocols.errors import InvalidInput, UnknownVoice
from protocols.live import ChunkSink, StreamingSynthesis
from protocols.messages import SpeechParams, SynthesisRequest, SynthesisResult, VoiceInfo
from protocols.ports import DictionaryMirror, Lexicon, SpeechProvider, VoiceManager
from protocols.providers.base import account_name
from protocols.providers.local_voices import LocalVoices


class EmbeddedProvider:
    name = "embedded"
    shared_account = False  # nothing metered: no global semaphore

    def __init__(self, engines: Sequence[SpeechProvider]) -> None:
        if not engines:
            raise ValueError("the embedded provider needs at least one engine")
        self.engines = tuple(engines)

    def formats(self) -> frozenset[str]:
        return frozenset.intersection(*(engine.formats() for engine in self.engines))

    async def voices(self) -> Sequence[VoiceInfo]:
        return [voice for engine in self.engines for voice in await engine.voices()]

    async def route(
        self, voice_id: str | None, language: str | None
    ) -> tuple[SpeechProvider, VoiceInfo]:
        """The engine that speaks for this voice (or language) and the voice it resolves to."""
        *first, last = self.engines
        for engine in first:
            try:
                return engine, await engine.resolve_voice(voice_id, language)
            except (UnknownVoice, InvalidInput):
                continue
        return last, await last.resolve_voice(voice_id, language)

    async def resolve_voice(self, voice_id: str | None, language: str | None) -> VoiceInfo:
        return (await self.route(voice_id, language))[1]

    async def prepare(
        self,
        text: str,
        voice: VoiceInfo,
        language: str | None,
        params: SpeechParams,
        preference: str | None = None,
    ) -> SpeechParams:
        engine, _ = await self.route(voice.voice_id, language)
        return await engine.prepare(text, voice, language, params, preference)

    async def synthesize(self, request: SynthesisRequest) -> SynthesisResult:
        engine, _ = await self.route(request.voice_id, request.language)
        return await engine.synthesize(request)

    async def synthesize_streaming(
        self, request: SynthesisRequest, sink: ChunkSink
    ) -> SynthesisResult:
        """The voice's engine streams when it can; else its whole clip is one chunk."""
        engine, _ = await self.route(request.voice_id, request.language)
        if isinstance(engine, StreamingSynthesis):
            return await engine.synthesize_streaming(request, sink)
        result = await engine.synthesize(request)
        await sink(result.audio)
        return result

    async def remaining_characters(self) -> int | None:
        return None

    @property
    def account(self) -> str:
        return account_name(self.name)

    def voice_manager(self) -> VoiceManager:
        return LocalVoices(self)

    def dictionary_mirror(self) -> DictionaryMirror | None:
        return None  # each engine applies Chorus's rules to its text

    def use_lexicon(self, lexicon: Lexicon) -> None:
        for engine in self.engines:
            engine.use_lexicon(lexicon)
