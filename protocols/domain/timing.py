"""Word and character timings (pure): what an engine is given to read, with where each spoken
word sits in it, and the alignment maths every provider shares.

- ``plan``: a job's text (``protocols/domain/ssml.py``) as engine input: runs of text to read
  (phoneme hints rendered, dictionaries applied) separated by pauses. Each run knows, for every
  word the user wrote, the span of the engine input that says it (a ``Group``), so the engine's
  word events can be mapped back to the user's words.
- ``spread``: words laid out over a span in proportion to their length (engines that report no
  word times, a group of words a dictionary rewrote).
- ``alignment``: ElevenLabs' shape from word times: each word's characters share its span
  evenly, the characters between two words (spaces, punctuation) the gap between them; times
  made monotonic and kept within the clip.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import NamedTuple

from protocols.dictionaries import PhonemeRule
from protocols.domain.ssml import Hint, Pause, Text, markup_spans, parse
from protocols.messages import Alignment, WordTiming

WORD = re.compile(r"\S+")  # a word: a run of non-space characters
_WORD = WORD


class Group(NamedTuple):
    """Words the user wrote, said by ``sent[start:end]`` of the run's engine input."""

    words: tuple[str, ...]
    start: int
    end: int


class Run(NamedTuple):
    sent: str  # what the engine reads
    phonemes: bool  # it holds the engine's phoneme markup
    groups: tuple[Group, ...]


#: (text) -> (engine input, holds phoneme markup): a provider's dictionaries, applied
Apply = Callable[[str], tuple[str, bool]]
Render = Callable[[PhonemeRule], str | None]


def plan(
    text: str, *, render: Render, escape: Callable[[str], str], apply: Apply | None = None,
) -> list[Run | Pause]:
    """The text as runs for the engine and pauses. Raises ``InvalidMarkup``."""
    out: list[Run | Pause] = []
    sent: list[str] = []
    size = 0
    phonemes = False
    groups: list[Group] = []

    def add(piece: str) -> tuple[int, int]:
        nonlocal size
        sent.append(piece)
        size += len(piece)
        return size - len(piece), size

    def flush() -> None:
        nonlocal sent, size, phonemes, groups
        if groups:
            out.append(Run("".join(sent), phonemes, tuple(groups)))
        sent, size, phonemes, groups = [], 0, False, []

    for seg in parse(text):
        if isinstance(seg, Pause):
            flush()
            out.append(seg)
        elif isinstance(seg, Hint):
            rendered = render(PhonemeRule(string_to_replace=seg.word, phoneme=seg.phoneme,
                                          alphabet=seg.alphabet))  # type: ignore[arg-type]
            if rendered is None:
                rendered = escape(seg.word)
            else:
                phonemes = True
            add(" ")
            start, end = add(rendered)
            add(" ")
            groups.append(Group(tuple(seg.word.split()), start, end))
        elif isinstance(seg, Text):
            said = apply(seg.text) if apply is not None else None
            if said is not None and said[0] != escape(seg.text):
                words = tuple(_WORD.findall(seg.text))
                start, end = add(said[0])
                phonemes = phonemes or said[1]
                if words:
                    groups.append(Group(words, start, end))
                continue
            last = 0
            for match in _WORD.finditer(seg.text):
                add(seg.text[last:match.start()])
                start, end = add(escape(match.group()))
                groups.append(Group((match.group(),), start, end))
                last = match.end()
            add(seg.text[last:])
    flush()
    return out


def spread(words: Sequence[str], start_s: float, end_s: float) -> list[WordTiming]:
    """``words`` one after another over ``[start_s, end_s]``, each by its length."""
    if not words:
        return []
    total = sum(max(1, len(w)) for w in words)
    span = max(0.0, end_s - start_s)
    out = []
    at = start_s
    for word in words:
        end = at + span * max(1, len(word)) / total
        out.append(WordTiming(text=word, start_s=at, end_s=end))
        at = end
    return out


def even_words(text: str, duration_s: float) -> list[WordTiming]:
    """The words of ``text`` spread over the whole clip (an engine that gives no word times)."""
    return spread(_WORD.findall(text), 0.0, duration_s)


def shifted(words: Sequence[WordTiming], offset_s: float) -> list[WordTiming]:
    return [WordTiming(text=w.text, start_s=w.start_s + offset_s, end_s=w.end_s + offset_s)
            for w in words]


def alignment(text: str, words: Sequence[WordTiming], duration_s: float) -> Alignment:
    """The alignment of ``text`` (what is heard) from its words' times. Every time is made
    monotonic, kept within ``[0, duration_s]`` and rounded to the millisecond."""
    clean: list[WordTiming] = []
    last = 0.0
    for w in words:
        start = min(max(w.start_s, last), duration_s)
        end = min(max(w.end_s, start), duration_s)
        clean.append(WordTiming(text=w.text, start_s=_ms(start), end_s=_ms(end)))
        last = end
    chars: list[str] = []
    starts: list[float] = []
    ends: list[float] = []
    pos = 0
    prev_end = 0.0
    for w in clean:
        at = text.find(w.text, pos)
        if at < 0:  # not in the text as written (should not happen): no characters for it
            continue
        gap = at - pos  # between two words: the gap between them
        chars.extend(text[pos:at])
        starts.extend([prev_end] * gap)
        ends.extend([max(prev_end, w.start_s)] * gap)
        n = len(w.text)
        t0, step = w.start_s, (w.end_s - w.start_s) / max(1, n)
        edges = [round(t0 + i * step, 3) for i in range(n + 1)]  # a character ends where
        chars.extend(w.text)                                     # the next one starts
        starts.extend(edges[:-1])
        ends.extend(edges[1:])
        pos = at + len(w.text)
        prev_end = w.end_s
    chars.extend(text[pos:])
    starts.extend([prev_end] * (len(text) - pos))
    ends.extend([prev_end] * (len(text) - pos))
    return Alignment(
        characters=tuple(chars),
        character_start_times_seconds=tuple(starts),
        character_end_times_seconds=tuple(ends),
        words=tuple(clean),
    )


def _ms(seconds: float) -> float:
    return round(seconds, 3)


def from_characters(
    text: str, chars: Sequence[str], starts: Sequence[float], ends: Sequence[float],
    duration_s: float,
) -> Alignment:
    """The alignment of ``text`` (what is heard) from a provider's character times over what it
    was sent (``chars``; SSML tags in it are skipped). Each word of ``text`` is found in order;
    its characters keep the provider's times. A word not found (the provider rewrote it) gets
    no time of its own (zero length where the previous one ended)."""
    source = "".join(chars)
    if len(source) != len(chars):  # a "character" of several code points: match per entry
        source = "".join(c[:1] or " " for c in chars)
    for start, end in markup_spans(source):
        source = source[:start] + "\0" * (end - start) + source[end:]
    words: list[WordTiming] = []
    pos = 0
    prev = 0.0
    times: dict[int, tuple[float, float]] = {}  # offset in ``text`` -> the character's times
    for match in _WORD.finditer(text):
        word = match.group()
        at = source.find(word, pos)
        if at < 0:
            words.append(WordTiming(text=word, start_s=prev, end_s=prev))
            continue
        first, last = starts[at], ends[at + len(word) - 1]
        words.append(WordTiming(text=word, start_s=first, end_s=max(first, last)))
        for k in range(len(word)):
            times[match.start() + k] = (starts[at + k], ends[at + k])
        pos = at + len(word)
        prev = max(first, last)

    built = alignment(text, words, duration_s)
    if not times:
        return built
    new_starts = list(built.character_start_times_seconds)
    new_ends = list(built.character_end_times_seconds)
    floor = 0.0
    for i in range(len(new_starts)):  # the provider's own times, kept monotonic and in the clip
        if i in times:
            s, e = times[i]
            new_starts[i] = _ms(min(max(s, floor), duration_s))
            new_ends[i] = _ms(min(max(e, new_starts[i]), duration_s))
        else:
            new_starts[i] = max(new_starts[i], floor)
            new_ends[i] = max(new_ends[i], new_starts[i])
        floor = new_ends[i] if i in times else new_starts[i]
    return Alignment(
        characters=built.characters, character_start_times_seconds=tuple(new_starts),
        character_end_times_seconds=tuple(new_ends), words=built.words,
    )
