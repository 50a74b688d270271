"""The SSML subset a job's text may hold (pure; README "SSML: breaks and phoneme hints").

- ``<break time="500ms"/>`` or ``<break time="1.5s"/>``: that much silence, at most
  ``MAX_BREAK_S`` each and ``MAX_BREAKS`` per text (ElevenLabs' own limits). Not read aloud and
  not charged.
- ``<phoneme alphabet="ipa" ph="təˈmɑːtoʊ">tomato</phoneme>`` (``ipa`` or ``cmu-arpabet``): the
  word said as those phonemes by the embedded engines; the word is what is charged and what
  the timings show.
- ``<speak>`` and ``</speak>`` around the text are accepted and ignored.

Anything else with a ``<`` is plain text, read as written ("a < b", "<3", "<b>"). A tag that
starts like one of ours but does not parse (``<break time="fast"/>``, a break over the limit,
a ``<phoneme>`` without ``ph`` or its closing tag) is ``InvalidMarkup`` (422), never read aloud.
"""

from __future__ import annotations

import html
import re
from typing import NamedTuple

from protocols.domain.text import normalize_text
from protocols.errors import InvalidInput

#: longest single break, and most breaks in one text (ElevenLabs: 3 s)
MAX_BREAK_S = 3.0
MAX_BREAKS = 50
ALPHABETS = ("ipa", "cmu-arpabet")


class InvalidMarkup(InvalidInput):
    code = "invalid_markup"
    title = "Invalid SSML markup"


class Text(NamedTuple):
    text: str


class Hint(NamedTuple):
    """A word said as the given phonemes."""

    word: str
    phoneme: str
    alphabet: str


class Pause(NamedTuple):
    seconds: float


Segment = Text | Hint | Pause

#: a tag that starts like one of ours (a bare "<break" or "<phoneme" followed by a space, "/" or
#: ">"); what is not one of these is text
_OURS = re.compile(r"<\s*(/?)\s*(break|phoneme|speak)(?=[\s/>])", re.IGNORECASE)
_BREAK = re.compile(
    r"<\s*break\s+time\s*=\s*(?P<q>[\"'])\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>ms|s)\s*(?P=q)"
    r"\s*/\s*>",
    re.IGNORECASE,
)
_PHONEME_OPEN = re.compile(r"<\s*phoneme(?P<attrs>(?:\s+[\w-]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*)"
                           r"\s*>", re.IGNORECASE)
_ATTR = re.compile(r"([\w-]+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")
_PHONEME_CLOSE = re.compile(r"<\s*/\s*phoneme\s*>", re.IGNORECASE)
_SPEAK = re.compile(r"<\s*/?\s*speak\s*>", re.IGNORECASE)


def has_markup(text: str) -> bool:
    return "<" in text and _OURS.search(text) is not None


def parse(text: str) -> list[Segment]:
    """The text as spoken pieces and pauses, in order. Raises ``InvalidMarkup``."""
    if not has_markup(text):
        return [Text(text)] if text else []
    out: list[Segment] = []
    breaks = 0
    pos = 0
    for match in _OURS.finditer(text):
        start = match.start()
        if start < pos:  # inside a phoneme element already consumed
            continue
        if start > pos:
            out.append(Text(text[pos:start]))
        closing, name = match.group(1), match.group(2).lower()
        if name == "speak":
            tag = _SPEAK.match(text, start)
            if tag is None:
                raise InvalidMarkup(f"malformed <speak> tag at character {start}", at=start)
            pos = tag.end()
        elif name == "break" and not closing:
            tag = _BREAK.match(text, start)
            if tag is None:
                raise InvalidMarkup(
                    f"malformed <break> at character {start}: write"
                    ' <break time="500ms"/> or <break time="1.5s"/>', at=start,
                )
            seconds = float(tag.group("n")) / (1000 if tag.group("unit").lower() == "ms" else 1)
            if seconds > MAX_BREAK_S:
                raise InvalidMarkup(
                    f"a break of {seconds:g} s is longer than the limit of {MAX_BREAK_S:g} s",
                    at=start, limit_s=MAX_BREAK_S,
                )
            breaks += 1
            if breaks > MAX_BREAKS:
                raise InvalidMarkup(f"more than {MAX_BREAKS} breaks in one text",
                                    limit=MAX_BREAKS)
            out.append(Pause(seconds))
            pos = tag.end()
        elif name == "phoneme" and not closing:
            out.append(_phoneme(text, start))
            pos = _PHONEME_CLOSE.search(text, start).end()  # type: ignore[union-attr]
        else:
            raise InvalidMarkup(f"unexpected </{name}> at character {start}", at=start)
    if pos < len(text):
        out.append(Text(text[pos:]))
    return out


def _phoneme(text: str, start: int) -> Hint:
    tag = _PHONEME_OPEN.match(text, start)
    if tag is None:
        raise InvalidMarkup(
            f"malformed <phoneme> at character {start}: write"
            ' <phoneme alphabet="ipa" ph="...">word</phoneme>', at=start,
        )
    attrs = {m.group(1).lower(): html.unescape(m.group(2) if m.group(2) is not None
                                               else m.group(3))
             for m in _ATTR.finditer(tag.group("attrs"))}
    close = _PHONEME_CLOSE.search(text, tag.end())
    if close is None:
        raise InvalidMarkup(f"<phoneme> at character {start} has no </phoneme>", at=start)
    word = text[tag.end():close.start()]
    alphabet = attrs.get("alphabet", "ipa").lower()
    if alphabet not in ALPHABETS:
        raise InvalidMarkup(f"phoneme alphabet {alphabet!r} is not one of {', '.join(ALPHABETS)}",
                            at=start)
    phoneme = attrs.get("ph", "").strip()
    if not phoneme or not word.strip() or "<" in word:
        raise InvalidMarkup(
            f"<phoneme> at character {start} needs a ph attribute and a plain word inside",
            at=start,
        )
    return Hint(word.strip(), phoneme, alphabet)


def spoken_text(text: str) -> str:
    """What is heard: the text without markup (a hint's word kept, a break a space),
    normalized like any job text. Raises ``InvalidMarkup``."""
    if not has_markup(text):
        return text
    parts = []
    for seg in parse(text):
        if isinstance(seg, Text):
            parts.append(seg.text)
        elif isinstance(seg, Hint):
            parts.append(seg.word)
        else:
            parts.append(" ")
    return normalize_text("".join(parts))


def charged_characters(text: str) -> int:
    """The characters a text is charged for: markup excluded (bad markup: all of it)."""
    if not has_markup(text):
        return len(text)
    try:
        return len(spoken_text(text))
    except InvalidMarkup:
        return len(text)


def pause_seconds(text: str) -> float:
    """The silence a text's breaks ask for, in total."""
    if not has_markup(text):
        return 0.0
    return sum(seg.seconds for seg in parse(text) if isinstance(seg, Pause))


def markup_spans(text: str) -> list[tuple[int, int]]:
    """Where ``text``'s tags are (``(start, end)``; a phoneme hint's word is not a tag)."""
    spans = []
    for match in _OURS.finditer(text):
        for pattern in (_BREAK, _SPEAK, _PHONEME_OPEN, _PHONEME_CLOSE):
            tag = pattern.match(text, match.start())
            if tag is not None:
                spans.append(tag.span())
                break
    return spans
