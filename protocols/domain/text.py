"""Text preparation for speech: normalisation, whether anything is speakable, and lossless
chunking at sentence boundaries.

``split_text`` never drops, adds or reorders a character: every chunk is a slice of the input
with only the whitespace at its two ends removed, so joining the chunks with the whitespace that
sat between them gives the input (stripped) back.
"""

from __future__ import annotations

import re
import unicodedata

# A run of whitespace that contains a line break collapses to one "\n" (a sentence boundary for
# split_text and a pause for the engines); any other run collapses to one space.
#: whitespace that ``normalize_text`` changes: a run of two or more, or one that is not a space
#: (a lone space, by far the most common, is left alone without a call per match)
_WS_RUN = re.compile(r"\s{2,}|[^\S ]")

# Sentence end: terminators, then closing quotes/brackets, then whitespace (or the end of the
# text). ASCII "." needs the whitespace so "3.14", "e.g." inside words and URLs stay whole.
_CLOSERS = "\"'”’»)]}」』）】〕"
_SENTENCE_END = re.compile(
    rf"(?:[.!?…]+[{re.escape(_CLOSERS)}]*(?=\s|$))"  # Latin: needs a following space or end
    rf"|(?:[。！？．]+[{re.escape(_CLOSERS)}]*)"  # CJK full-width: breaks even without a space
    r"|(?=\n)"  # before a line break
)
# Clause end: a comma-like mark followed by whitespace, or a full-width one anywhere.
_CLAUSE_END = re.compile(r"(?:[,;:—–]+(?=\s))|(?:[、，；：]+)")
_SPACE = re.compile(r"(?=\s)")


def normalize_text(text: str) -> str:
    """NFC, strip, collapse whitespace (runs with a line break → "\\n", others → " ")."""
    text = unicodedata.normalize("NFC", text).strip()

    def collapse(match: re.Match[str]) -> str:
        return "\n" if "\n" in match.group() or "\r" in match.group() else " "

    return _WS_RUN.sub(collapse, text)


#: Unicode general categories of characters a voice can say: letters, numbers, punctuation,
#: symbols. Separators, controls, format characters (zero-width space, word joiner, BOM),
#: unassigned and private-use code points and lone combining marks are not speech.
_SPEAKABLE = frozenset("LNPS")


def speakable(text: str) -> bool:
    """Whether ``text`` holds anything to say (one letter, digit, punctuation mark or symbol):
    a text of only whitespace and zero-width or other format characters has nothing."""
    return any(unicodedata.category(char)[0] in _SPEAKABLE for char in text)


def _last_break(pattern: re.Pattern[str], text: str, start: int, stop: int) -> int | None:
    """The largest break offset ``e`` with ``start < e <= stop`` (end of a match), or None."""
    best = None
    # No ``endpos``: lookaheads and ``$`` must see the real text after the window.
    for match in pattern.finditer(text, start):
        end = match.end()
        if end > stop:
            break
        if end > start:
            best = end
    return best


def _hard_cut(text: str, start: int, stop: int) -> int:
    """Cut at ``stop``, but not right before a combining mark (keeps a grapheme together)."""
    cut = stop
    while cut > start + 1 and unicodedata.combining(text[cut]):
        cut -= 1
    return cut


def split_text(text: str, max_chars: int) -> list[str]:
    """Split ``text`` into chunks of at most ``max_chars`` characters.

    Whole sentences are packed greedily into each chunk; a sentence longer than ``max_chars``
    is split at a clause mark (comma, semicolon, ...) in the second half of the window, else at
    the last whitespace, else hard-cut at ``max_chars``. Chunks have no surrounding whitespace;
    an empty or blank text gives ``[]``.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    chunks: list[str] = []
    n = len(text)
    pos = 0
    while True:
        while pos < n and text[pos].isspace():
            pos += 1
        if pos >= n:
            return chunks
        rest = text[pos:].rstrip()
        if len(rest) <= max_chars:
            chunks.append(rest)
            return chunks
        stop = pos + max_chars  # a cut at ``stop`` keeps the chunk within max_chars
        cut = _last_break(_SENTENCE_END, text, pos, stop)
        if cut is None:
            clause = _last_break(_CLAUSE_END, text, pos, stop)
            space = _last_break(_SPACE, text, pos, stop)
            if clause is not None and clause - pos >= max_chars // 2:
                cut = clause
            elif space is not None:
                cut = space
            elif clause is not None:
                cut = clause
            else:
                cut = _hard_cut(text, pos, stop)
        chunks.append(text[pos:cut].rstrip())
        pos = cut
