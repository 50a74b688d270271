"""Character timings for the with-timestamps routes, in ElevenLabs' alignment shape.

The recorded alignment of a clip (``WebContext.alignment_of``) when there is one; else an
**approximate** one: the clip's duration spread evenly over the text's characters (each
character the same length, the last ending at the clip's end). Pure functions."""

from __future__ import annotations

from typing import Any

from protocols.messages import Alignment


def even_spread(text: str, duration_s: float) -> Alignment:
    """Every character of ``text`` the same share of ``duration_s``, in order."""
    chars = tuple(text)
    if not chars:
        return Alignment()
    step = duration_s / len(chars)
    starts = tuple(round(i * step, 4) for i in range(len(chars)))
    ends = (*starts[1:], round(duration_s, 4))
    return Alignment(
        characters=chars, character_start_times_seconds=starts, character_end_times_seconds=ends,
    )


def view(alignment: Alignment) -> dict[str, Any]:
    return {
        "characters": list(alignment.characters),
        "character_start_times_seconds": list(alignment.character_start_times_seconds),
        "character_end_times_seconds": list(alignment.character_end_times_seconds),
    }


def split(alignment: Alignment, bounds: list[float]) -> list[Alignment]:
    """The characters by the part of the clip they start in: ``bounds`` are the parts' end
    times (ascending; the last part takes every character left). Times stay absolute."""
    parts: list[Alignment] = []
    i, n = 0, len(alignment.characters)
    for k, end in enumerate(bounds):
        j = i
        last = k == len(bounds) - 1
        while j < n and (last or alignment.character_start_times_seconds[j] < end):
            j += 1
        parts.append(Alignment(
            characters=alignment.characters[i:j],
            character_start_times_seconds=alignment.character_start_times_seconds[i:j],
            character_end_times_seconds=alignment.character_end_times_seconds[i:j],
        ))
        i = j
    return parts
