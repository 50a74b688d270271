"""Embedded offline speech: libespeak-ng (from ``espeakng_loader``) through a small ctypes binding.

espeak-ng keeps its whole state (voice, parameters, output buffers, the synth callback) in C
globals; concurrent calls corrupt each other's audio (without the lock, five concurrent calls
segfaulted the test process). So this module holds the one piece of process-global state the
design allows: ``_LIB_LOCK`` plus the lazily created ``_Engine`` it guards. Every call into the
library happens in a worker thread holding that lock; each ``EspeakProvider`` additionally
funnels its calls through a ``trio.CapacityLimiter(1)`` so that waiting callers park in trio,
not in blocked threads. Scale out with processes.

Audio is 22,050 Hz s16 mono. Output is not bit-identical between calls: libespeak-ng's pitch
"flutter" index is a C static that carries over from one utterance to the next.
"""

from __future__ import annotations

import ctypes
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple, TypeVar

import espeakng_loader
import trio

from protocols.dictionaries import PhonemeRule
from protocols.domain.audio import FORMAT_NAMES, parse_format, pcm_duration, silence
from protocols.domain.phonemes import to_espeak
from protocols.domain.ssml import Pause, charged_characters, spoken_text
from protocols.domain.text import normalize_text, split_text
from protocols.domain.timing import Group, spread
from protocols.errors import InvalidInput, SynthesisFailed, TextEmpty, UnknownVoice
from protocols.live import ChunkSink
from protocols.messages import SynthesisRequest, SynthesisResult, VoiceInfo, WordTiming
from protocols.providers.base import LocalProvider, clip_result
from protocols.providers.streaming import STREAM_PART_CHARS, Part, stream_parts, stream_plan

SAMPLE_RATE = 22050
DEFAULT_VOICE = "en-us"
DEFAULT_VARIANTS = ("f1", "f2", "f3", "f4", "f5", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8")
DEFAULT_VARIANT_BASES = ("en-us", "en-gb", "ko")
#: language → voice where espeak's own priorities pick another (it ranks en-gb first for "en")
_PREFERRED = {"en": "en-us", "zh": "cmn"}
_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_PHONEMES = 0x100  # espeakPHONEMES: read [[...]] as phoneme mnemonics
_ENDPAUSE = 0x1000
_POS_CHARACTER = 1
_EVENT_WORD = 1
_EVENT_END = 5  # end of a clause or sentence
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _VoiceStruct(ctypes.Structure):  # espeak_VOICE
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),  # (priority byte, NUL-terminated code)*, then a 0 byte
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


class _EventStruct(ctypes.Structure):  # espeak_EVENT
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based, in characters of the input
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms from the start of this synthesis call
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_void_p),
    ]


class _Event(NamedTuple):
    """A word starts (``word`` True, at ``position``, 0-based) or a clause ends, at ``at_s``."""

    word: bool
    position: int
    at_s: float


class _Voice(NamedTuple):
    name: str
    identifier: str  # file path under espeak-ng-data/voices, e.g. "gmw/en-US" or "!v/f3"
    languages: tuple[tuple[int, str], ...]  # (priority, code), lower priority = better
    gender: int


class _Engine:
    """libespeak-ng, initialised once. Use only while holding ``_LIB_LOCK``."""

    def __init__(self) -> None:
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_ListVoices.argtypes = [ctypes.POINTER(_VoiceStruct)]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_VoiceStruct))
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        data = espeakng_loader.get_data_path().encode()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 500, data, _INITIALIZE_DONT_EXIT)
        if rate != SAMPLE_RATE:
            raise SynthesisFailed(f"espeak-ng failed to initialise (returned {rate})")
        self._lib = lib
        self._pcm = bytearray()
        self._events: list[_Event] = []
        self._callback = _SYNTH_CALLBACK(self._collect)  # keep a reference: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self.voices = self._list(None)
        spec = _VoiceStruct()
        self._variant_filter = ctypes.create_string_buffer(b"variant")
        spec.languages = ctypes.cast(self._variant_filter, ctypes.c_void_p).value
        self.variants = self._list(spec)

    def _collect(self, wav: ctypes.Array, samples: int, events: int) -> int:
        if samples > 0 and wav:
            self._pcm += ctypes.string_at(wav, samples * 2)
        if events:
            array = ctypes.cast(events, ctypes.POINTER(_EventStruct))
            i = 0
            while (event := array[i]).type != 0:  # a list ended by LIST_TERMINATED
                if event.type in (_EVENT_WORD, _EVENT_END):
                    self._events.append(_Event(event.type == _EVENT_WORD,
                                               event.text_position - 1,
                                               event.audio_position / 1000))
                i += 1
        return 0  # 0 = continue synthesis

    def _list(self, spec: _VoiceStruct | None) -> list[_Voice]:
        array = self._lib.espeak_ListVoices(ctypes.byref(spec) if spec is not None else None)
        out = []
        i = 0
        while array[i]:
            v = array[i].contents
            out.append(
                _Voice(v.name.decode(), v.identifier.decode(), _languages(v.languages), v.gender)
            )
            i += 1
        return out

    def synth(self, voice_name: str, text: str, phonemes: bool = False) -> bytes:
        return self.synth_timed(voice_name, text, phonemes)[0]

    def synth_timed(
        self, voice_name: str, text: str, phonemes: bool = False, end_pause: bool = True
    ) -> tuple[bytes, list[_Event]]:
        """The PCM and the word and clause-end events (positions in ``text``); ``end_pause``
        False: no sentence pause after the text (an SSML break follows)."""
        if self._lib.espeak_SetVoiceByName(voice_name.encode()) != 0:
            raise SynthesisFailed(f"espeak-ng could not load voice {voice_name!r}")
        data = text.replace("\0", " ").encode() + b"\0"
        self._pcm = bytearray()
        self._events = []
        flags = _CHARS_UTF8 | (_ENDPAUSE if end_pause else 0) | (_PHONEMES if phonemes else 0)
        status = self._lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, flags, None, None)
        if status != 0 or self._lib.espeak_Synchronize() != 0:
            raise SynthesisFailed(f"espeak-ng synthesis failed (status {status})")
        pcm, self._pcm = bytes(self._pcm), bytearray()  # don't hold the last clip
        events, self._events = self._events, []
        return pcm, events


def _languages(ptr: int | None) -> tuple[tuple[int, str], ...]:
    out = []
    offset = 0
    while ptr:
        priority = ctypes.string_at(ptr + offset, 1)[0]
        if priority == 0:
            break
        code = ctypes.string_at(ptr + offset + 1)
        out.append((priority, code.decode().lower()))
        offset += len(code) + 2
    return tuple(out)


_LIB_LOCK = threading.Lock()  # serializes every call into libespeak-ng in this process
_engine: _Engine | None = None


T = TypeVar("T")


def _with_engine(fn: Callable[..., T], *args: object) -> T:
    """Run ``fn(engine, *args)`` in this thread holding the library lock (create it once)."""
    global _engine
    with _LIB_LOCK:
        if _engine is None:
            try:
                _engine = _Engine()
            except OSError as exc:
                raise SynthesisFailed(f"cannot load libespeak-ng: {exc}") from exc
        return fn(_engine, *args)


class _Catalog:
    """Voice ids → espeak voice names, built once from the engine's lists."""

    def __init__(self, engine: _Engine, variants: Iterable[str], bases: Iterable[str]) -> None:
        codes = [v.languages[0][1] for v in engine.voices if v.languages]
        self.base: dict[str, tuple[_Voice, VoiceInfo]] = {}
        for voice in engine.voices:
            if not voice.languages:
                continue
            code = voice.languages[0][1]
            vid = code if codes.count(code) == 1 else voice.identifier.rsplit("/", 1)[-1].lower()
            info = VoiceInfo(
                voice_id=vid, name=voice.name, language=code.split("-")[0],
                languages=tuple(c for _, c in voice.languages), provider="espeak",
                category="default", description=f"espeak-ng voice {voice.identifier}",
            )
            self.base[vid] = (voice, info)
        self.variant: dict[str, tuple[str, str]] = {}  # lower id → (file id, display name)
        for var in engine.variants:
            file_id = var.identifier.rsplit("/", 1)[-1]
            if re.fullmatch(r"[A-Za-z0-9_-]+", file_id):
                self.variant[file_id.lower()] = (file_id, var.name)
        self.listed = [info for _, info in self.base.values()]
        for base in bases:
            self.listed.extend(self.lookup(f"{base}+{v}")[1] for v in variants)

    def lookup(self, voice_id: str) -> tuple[str, VoiceInfo]:
        """(espeak voice name, VoiceInfo) for ``base`` or ``base+variant``; raises UnknownVoice."""
        base_id, _, variant_id = voice_id.strip().lower().partition("+")
        found = self.base.get(base_id)
        variant = self.variant.get(variant_id) if variant_id else None
        if found is None or (variant_id and variant is None):
            raise UnknownVoice(f"unknown espeak voice {voice_id!r}", voice_id=voice_id)
        voice, info = found
        if variant is None:
            return voice.identifier, info
        file_id, display = variant
        return f"{voice.identifier}+{file_id}", VoiceInfo(
            voice_id=f"{info.voice_id}+{file_id}", name=f"{info.name} ({display})",
            language=info.language, languages=info.languages, provider="espeak",
            category="default",
            description=f"espeak-ng voice {voice.identifier}, variant {file_id}",
        )

    def for_language(self, language: str) -> str | None:
        code = language.strip().lower().replace("_", "-")
        for candidate in dict.fromkeys((code, code.split("-")[0])):
            if candidate in _PREFERRED:
                return _PREFERRED[candidate]
            if candidate in self.base:
                return candidate
            ranked = [
                (prio, vid)
                for vid, (voice, _) in self.base.items()
                for prio, c in voice.languages
                if c == candidate
            ]
            if ranked:
                return min(ranked)[1]
        return None


class EspeakProvider(LocalProvider):
    """``SpeechProvider`` on the embedded espeak-ng engine (offline, ~1000x real time).
    ``voice_settings`` and ``seed`` are ElevenLabs features: accepted, part of the cache key,
    not used by the engine. Pronunciation dictionaries are applied to the text (aliases) and
    through the phoneme input (phoneme rules), see ``LocalProvider.pronounce``."""

    name = "espeak"
    model_id = "espeak-ng"

    def __init__(
        self,
        *,
        chunk_chars: int = 1000,
        listed_variants: Sequence[str] = DEFAULT_VARIANTS,
        variant_bases: Sequence[str] = DEFAULT_VARIANT_BASES,
    ) -> None:
        self._chunk_chars = chunk_chars
        self._listed_variants = tuple(listed_variants)
        self._variant_bases = tuple(variant_bases)
        self._limiter = trio.CapacityLimiter(1)
        self._catalog: _Catalog | None = None

    def formats(self) -> frozenset[str]:
        return FORMAT_NAMES

    def render_phoneme(self, rule: PhonemeRule) -> str | None:
        """espeak-ng's phoneme input: ``[[mnemonics]]`` (``protocols/domain/phonemes.py``
        converts English IPA and CMU Arpabet; anything else leaves the word as written)."""
        mnemonics = to_espeak(rule.phoneme, rule.alphabet)
        return None if mnemonics is None else f"[[{mnemonics}]]"

    def escape_text(self, text: str) -> str:
        return text.replace("[[", "[ [")  # the user's own brackets stay text

    async def _engine_call(self, fn: Callable[..., T], *args: object) -> T:
        return await trio.to_thread.run_sync(_with_engine, fn, *args, limiter=self._limiter)

    async def _get_catalog(self) -> _Catalog:
        if self._catalog is None:
            self._catalog = await self._engine_call(
                _Catalog, self._listed_variants, self._variant_bases
            )
        return self._catalog

    async def voices(self) -> Sequence[VoiceInfo]:
        return list((await self._get_catalog()).listed)

    async def resolve_voice(self, voice_id: str | None, language: str | None) -> VoiceInfo:
        return (await self._resolve(voice_id, language))[1]

    async def _resolve(self, voice_id: str | None, language: str | None) -> tuple[str, VoiceInfo]:
        catalog = await self._get_catalog()
        if voice_id:
            return catalog.lookup(voice_id)
        if language and language.strip():
            found = catalog.for_language(language)
            if found is None:
                raise InvalidInput(
                    f"no espeak voice for language {language!r}", language=language
                )
            return catalog.lookup(found)
        return catalog.lookup(DEFAULT_VOICE)

    async def synthesize(self, request: SynthesisRequest) -> SynthesisResult:
        text = normalize_text(request.text)
        if not text:
            raise TextEmpty("text is empty")
        fmt = parse_format(request.output_format)
        language = request.language
        if not request.voice_id and not language and _HANGUL.search(text):
            language = "ko"  # no voice or language given: Hangul text gets the Korean voice
        espeak_name, _ = await self._resolve(request.voice_id, language)
        pcm = bytearray()
        words: list[WordTiming] = []
        steps = await self.speech_plan(text, request.params)
        for i, step in enumerate(steps):
            if isinstance(step, Pause):
                pcm += silence(step.seconds, SAMPLE_RATE)
                continue
            at = 0
            chunks = split_text(step.sent, self._chunk_chars)
            for j, chunk in enumerate(chunks):
                # before a break, no pause of the engine's own: the break is the pause
                end_pause = j + 1 < len(chunks) or not isinstance(
                    steps[i + 1] if i + 1 < len(steps) else None, Pause
                )
                # One engine call per chunk: concurrent requests interleave between chunks.
                part, events = await self._engine_call(
                    _Engine.synth_timed, espeak_name, chunk, step.phonemes, end_pause
                )
                at = step.sent.find(chunk, at)
                words += _word_times(step.groups, at, len(chunk), events,
                                     pcm_duration(len(pcm), SAMPLE_RATE),
                                     pcm_duration(part, SAMPLE_RATE))
                at += len(chunk)
                pcm += part
        return await clip_result(
            bytes(pcm), SAMPLE_RATE, fmt, request, text, words, engine="espeak-ng"
        )

    async def synthesize_streaming(
        self, request: SynthesisRequest, sink: ChunkSink
    ) -> SynthesisResult:
        """``synthesize`` a few sentences at a time (breaks as silence, phoneme hints read),
        each part's audio handed to ``sink`` as soon as it is encoded and its words timed as
        ``synthesize`` times them (``protocols/providers/streaming.py``)."""
        text = normalize_text(request.text)
        if not text:
            raise TextEmpty("text is empty")
        fmt = parse_format(request.output_format)
        language = request.language
        if not request.voice_id and not language and _HANGUL.search(text):
            language = "ko"
        espeak_name, _ = await self._resolve(request.voice_id, language)
        steps = await self.speech_plan(text, request.params)

        async def synth(part: Part) -> tuple[bytes, list[WordTiming]]:
            pcm, events = await self._engine_call(
                _Engine.synth_timed, espeak_name, part.text, part.run.phonemes, part.end_pause
            )
            return pcm, _word_times(part.run.groups, part.offset, len(part.text), events,
                                    0.0, pcm_duration(pcm, SAMPLE_RATE))

        return await stream_parts(
            stream_plan(steps, min(self._chunk_chars, STREAM_PART_CHARS)), synth,
            SAMPLE_RATE, fmt, sink, spoken=spoken_text(text),
            characters=charged_characters(request.text), engine="espeak-ng",
        )


def _word_times(
    groups: Sequence[Group], offset: int, length: int, events: Sequence[_Event],
    t0: float, duration: float,
) -> list[WordTiming]:
    """The times of the words said by one engine call on ``sent[offset:offset + length]``:
    a word starts at its first word event (a number can have several), and ends where the
    next word starts or its clause ends (``t0``: the call's start in the clip)."""
    inside = [g for g in groups if offset <= g.start < offset + length]
    starts: list[float | None] = []
    for g in inside:
        found = [e.at_s for e in events if e.word and g.start <= e.position + offset < g.end]
        starts.append(min(found) if found else None)
    clause_ends = sorted(e.at_s for e in events if not e.word)
    out: list[WordTiming] = []
    prev = 0.0
    for i, g in enumerate(inside):
        start = starts[i]
        if start is None:  # no event for it (a lone symbol): no time of its own
            out += spread(g.words, t0 + prev, t0 + prev)
            continue
        start = max(start, prev)
        later = [x for x in (*starts[i + 1:], *clause_ends) if x is not None and x > start]
        end = min(min(later, default=duration), duration)
        out += spread(g.words, t0 + start, t0 + end)
        prev = end
    return out
