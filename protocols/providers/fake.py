"""The built-in stand-in provider (``CHORUS_PROVIDER=fake``, ``run.py bench``, and every test).

It does no synthesis: every request gets ``CLIP_S`` of silence, really encoded in the asked
format (it decodes, and ``duration_s`` is its true length), so what a bench user downloads is
audio. The clip is encoded once per format per process (a few milliseconds, in the event loop:
no thread, so a test's MockClock never jumps while one runs) and shared after that, so a call
costs next to nothing and identical requests always get identical bytes. Its word timings (every
clip has them, as with every engine) spread the words over the clip by length; they are worked
out once per layout of a text (``_LAYOUTS``) and equal the shared maths' (``timing.py``).

It behaves like a metered remote provider: calls go through the global semaphore
(``shared_account``), each call is a checkpoint, waits ``latency_s``, and is counted.

Test seams (public attributes): ``calls``, ``active`` and ``peak`` (concurrent calls now and at
most), ``requests`` (the last ``KEPT_REQUESTS``, oldest first), ``script`` (a queue of exceptions
to raise or extra seconds to wait, one per call), ``gate`` (an Event every call waits on),
``latency_s``; the voices are a constructor argument.

Streaming (``synthesize_streaming``, ``protocols/live.py``): after ``latency_s`` (its time to first
byte) the clip is handed out in ``STREAM_PIECES`` byte pieces; before each piece after the first
it waits ``stream_gap_s`` and, when set, the ``hold`` Event (a test seam: "audio is flowing, the
job is not finished"); ``break_stream``, when set, is raised once right after the first piece
(an upstream stream that breaks mid-way).
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Sequence
from typing import NamedTuple

import trio

from protocols.domain.audio import FORMAT_NAMES, encode_pcm, parse_format, silence
from protocols.domain.ssml import charged_characters, spoken_text
from protocols.domain.text import normalize_text
from protocols.domain.timing import WORD, alignment, even_words
from protocols.errors import UnknownVoice
from protocols.live import ChunkSink
from protocols.messages import (
    Alignment,
    SynthesisRequest,
    SynthesisResult,
    VoiceInfo,
    WordTiming,
)
from protocols.providers.base import LocalProvider

CLIP_S = 0.1
RATE = 22050
KEPT_REQUESTS = 1000  # ``requests`` is bounded: the fake may serve for days
STREAM_PIECES = 4

VOICES = (
    VoiceInfo(voice_id="fake-en", name="Fake English", language="en", provider="fake"),
    VoiceInfo(voice_id="fake-ko", name="Fake Korean", language="ko", provider="fake"),
)


@functools.cache
def _clip(format_name: str) -> bytes:
    """``CLIP_S`` of silence encoded in this format (once per process)."""
    return encode_pcm(silence(CLIP_S, RATE), RATE, parse_format(format_name))


class FakeProvider(LocalProvider):
    """Stands in for a metered remote provider (so it goes through the global semaphore)."""

    name = "fake"
    model_id = "fake"
    shared_account = True

    def __init__(self, latency_s: float = 0.0, *, voices: Sequence[VoiceInfo] = VOICES) -> None:
        self.latency_s = latency_s
        self._voices = tuple(voices)
        self._voice_ids = frozenset(voice.voice_id for voice in self._voices)
        self.calls = 0
        self.active = 0
        self.peak = 0
        self.requests: collections.deque[SynthesisRequest] = collections.deque(
            maxlen=KEPT_REQUESTS
        )
        self.script: collections.deque[BaseException | float] = collections.deque()
        self.gate: trio.Event | None = None
        self.stream_gap_s = 0.0
        self.hold: trio.Event | None = None
        self.break_stream: BaseException | None = None

    def formats(self) -> frozenset[str]:
        return FORMAT_NAMES

    async def voices(self) -> Sequence[VoiceInfo]:
        await trio.lowlevel.checkpoint()
        return self._voices

    async def resolve_voice(self, voice_id: str | None, language: str | None) -> VoiceInfo:
        """By id; else the first voice speaking ``language`` ("ko-KR" matches "ko"); else the
        first voice. Raises ``UnknownVoice`` when nothing matches."""
        await trio.lowlevel.checkpoint()
        if voice_id is not None:
            for voice in self._voices:
                if voice.voice_id == voice_id:
                    return voice
            raise UnknownVoice(f"No voice {voice_id!r}.", voice_id=voice_id)
        if language is not None:
            wanted = language.split("-", 1)[0].lower()
            for voice in self._voices:
                if wanted in (voice.language, *voice.languages):
                    return voice
            raise UnknownVoice(f"No voice for language {language!r}.", language=language)
        if not self._voices:
            raise UnknownVoice("This provider has no voices.")
        return self._voices[0]

    async def synthesize(self, request: SynthesisRequest) -> SynthesisResult:
        await trio.lowlevel.checkpoint()
        self.calls += 1
        self.requests.append(request)
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.script:
                step = self.script.popleft()
                if isinstance(step, BaseException):
                    raise step
                await trio.sleep(step)
            if self.latency_s:
                await trio.sleep(self.latency_s)
        finally:
            self.active -= 1
        if request.voice_id not in self._voice_ids:
            raise UnknownVoice(f"No voice {request.voice_id!r}.", voice_id=request.voice_id)
        fmt = parse_format(request.output_format)
        return SynthesisResult(
            audio=_clip(fmt.name), content_type=fmt.content_type, duration_s=CLIP_S,
            characters=charged_characters(request.text), alignment=_alignment(request.text),
        )

    async def synthesize_streaming(
        self, request: SynthesisRequest, sink: ChunkSink
    ) -> SynthesisResult:
        """``synthesize``, its clip handed to ``sink`` in pieces (see the module docstring)."""
        result = await self.synthesize(request)
        data = result.audio
        step = -(-len(data) // STREAM_PIECES)
        for i, start in enumerate(range(0, len(data), step)):
            if i:
                if self.break_stream is not None:
                    broken, self.break_stream = self.break_stream, None
                    raise broken
                if self.stream_gap_s:
                    await trio.sleep(self.stream_gap_s)
                if self.hold is not None:
                    await self.hold.wait()
            await sink(data[start : start + step])
        return result


class _Times(NamedTuple):
    """A layout's times (``_LAYOUTS``)."""

    starts: tuple[float, ...]
    ends: tuple[float, ...]
    words: tuple[tuple[float, float], ...]


#: a text's layout (its length, each word's span) -> its times (characters' starts, ends;
#: each word's start and end). The times depend on nothing else, and texts of one layout are
#: common (a numbered line, a template), so each layout is worked out once: the generic maths
#: costs ~50 us a clip (a rounding per character), a known layout ~10 us. Bounded.
_LAYOUTS: collections.OrderedDict[tuple[int, ...], _Times] = collections.OrderedDict()
LAYOUTS_KEPT = 1024


def _alignment(text: str) -> Alignment:
    """The words spread evenly over the clip by length (the fake says nothing; breaks are
    ignored): ``timing.alignment`` of ``timing.even_words``, the same result (a test pins it)."""
    said = spoken_text(normalize_text(text))
    matches = list(WORD.finditer(said))
    layout = (len(said), *(edge for m in matches for edge in m.span()))
    times = _LAYOUTS.get(layout)
    if times is None:
        made = alignment(said, even_words(said, CLIP_S), CLIP_S)
        times = _Times(made.character_start_times_seconds, made.character_end_times_seconds,
                       tuple((w.start_s, w.end_s) for w in made.words))
        _LAYOUTS[layout] = times
        if len(_LAYOUTS) > LAYOUTS_KEPT:
            _LAYOUTS.popitem(last=False)
    return Alignment(
        characters=tuple(said), character_start_times_seconds=times.starts,
        character_end_times_seconds=times.ends,
        words=tuple(WordTiming(text=m.group(), start_s=start, end_s=end)
                    for m, (start, end) in zip(matches, times.words, strict=True)),
    )
