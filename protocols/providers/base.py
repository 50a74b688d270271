"""What local providers (the embedded engine, the built-in fake) share: one model, nothing to
meter, no account to protect, no cloning (``LocalVoices``), Chorus's pronunciation dictionaries
applied to the text (``pronounce``); and how any provider names its account."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import av
import msgspec
import trio

from protocols.dictionaries import PhonemeRule, Rule, is_chorus_dictionary
from protocols.domain.audio import AudioFormat, encode_pcm, pcm_duration
from protocols.domain.pronunciation import Pronounced, apply_rules
from protocols.domain.ssml import Pause, charged_characters, spoken_text
from protocols.domain.timing import Run, alignment, plan
from protocols.errors import InvalidInput, SynthesisFailed
from protocols.messages import (
    SpeechParams,
    SynthesisRequest,
    SynthesisResult,
    VoiceInfo,
    WordTiming,
)
from protocols.ports import DictionaryMirror, Lexicon, VoiceManager
from protocols.providers.local_voices import LocalVoices


def account_name(provider: str, secret: str = "") -> str:
    """Names a provider account (whose slots the global semaphore counts): the provider and a
    hash of its credential, so two deployments on one Redis with different keys do not share
    slots, and the key itself is never in Redis."""
    return f"{provider}-{hashlib.sha256(secret.encode()).hexdigest()[:16]}"


async def clip_result(
    pcm: bytes, sample_rate: int, fmt: AudioFormat, request: SynthesisRequest, text: str,
    words: Sequence[WordTiming], *, engine: str,
) -> SynthesisResult:
    """A local engine's whole clip: its PCM encoded to ``fmt`` (in a worker thread), charged
    for the request's text without markup, timed from ``words`` over ``text`` (normalized).
    Raises ``SynthesisFailed`` when there is no audio or it cannot be encoded."""
    if not pcm:
        raise SynthesisFailed(f"{engine} produced no audio")
    try:
        audio = await trio.to_thread.run_sync(encode_pcm, pcm, sample_rate, fmt)
    except (av.FFmpegError, ValueError) as exc:
        raise SynthesisFailed(f"encoding to {fmt.name} failed: {exc}") from exc
    duration = pcm_duration(pcm, sample_rate)
    return SynthesisResult(
        audio=audio, content_type=fmt.content_type, duration_s=duration,
        characters=charged_characters(request.text),
        alignment=alignment(spoken_text(text), words, duration),
    )


class LocalProvider:
    name: str
    model_id: str  # the one "model" this provider has
    #: calls do not draw on a metered account shared by every worker (no global semaphore)
    shared_account = False
    _lexicon: Lexicon | None = None

    async def prepare(
        self,
        text: str,
        voice: VoiceInfo,
        language: str | None,
        params: SpeechParams,
        preference: str | None = None,
    ) -> SpeechParams:
        if params.model_id and params.model_id != self.model_id:
            raise InvalidInput(
                f"model_id {params.model_id!r} is not offered by the {self.name} provider"
                f" (it has {self.model_id!r})",
                models=[self.model_id],
            )
        for ref in params.dictionaries:
            if not is_chorus_dictionary(ref.pronunciation_dictionary_id) or not ref.version_id:
                raise InvalidInput(
                    f"pronunciation dictionary {ref.pronunciation_dictionary_id!r} is not one"
                    f" of Chorus's: the {self.name} provider applies only those (make one with"
                    " POST /v1/pronunciation-dictionaries/add-from-rules)",
                    field="pronunciation_dictionary_locators",
                )
        return msgspec.structs.replace(params, model_id=self.model_id)

    async def remaining_characters(self) -> int | None:
        return None

    @property
    def account(self) -> str:
        return account_name(self.name)

    def voice_manager(self) -> VoiceManager:
        return LocalVoices(self)

    def dictionary_mirror(self) -> DictionaryMirror | None:
        return None  # no dictionaries of its own: Chorus's rules are applied to the text

    def use_lexicon(self, lexicon: Lexicon) -> None:
        self._lexicon = lexicon

    async def pronounce(self, text: str, params: SpeechParams) -> Pronounced:
        """``text`` with the job's pinned dictionaries applied, in order
        (``protocols/domain/pronunciation.py``): aliases as text, phoneme rules through
        ``render_phoneme``. Raises ``DictionaryNotFound`` for a version that is gone."""
        if not params.dictionaries:
            return Pronounced(text, False)
        if self._lexicon is None:
            raise SynthesisFailed(f"the {self.name} provider was given no pronunciation lexicon")
        rules: list[Rule] = []
        for ref in params.dictionaries:
            rules.extend((await self._lexicon.version(ref)).rules)
        return apply_rules(text, rules, render=self.render_phoneme, escape=self.escape_text)

    async def speech_plan(self, text: str, params: SpeechParams) -> list[Run | Pause]:
        """``text`` (normalized, with its SSML subset) as runs for the engine and pauses
        (``protocols/domain/timing.py``): phoneme hints through ``render_phoneme``, the job's
        pinned dictionaries applied to the text between them (as ``pronounce`` does)."""
        apply = None
        if params.dictionaries:
            if self._lexicon is None:
                raise SynthesisFailed(
                    f"the {self.name} provider was given no pronunciation lexicon"
                )
            rules: list[Rule] = []
            for ref in params.dictionaries:
                rules.extend((await self._lexicon.version(ref)).rules)

            def apply(piece: str) -> tuple[str, bool]:
                return tuple(apply_rules(piece, rules, render=self.render_phoneme,  # type: ignore[return-value]
                                         escape=self.escape_text))

        return plan(text, render=self.render_phoneme, escape=self.escape_text, apply=apply)

    def render_phoneme(self, rule: PhonemeRule) -> str | None:
        """The engine's phoneme input for a phoneme rule; None: it has none (rule skipped)."""
        return None

    def escape_text(self, text: str) -> str:
        """The user's text around phoneme markup, made so the engine reads it as text."""
        return text
