"""Storybook rules: checking a submitted book and laying out its lines (pure, no I/O).

``plan`` turns a ``StorybookRequest`` into a ``NewStorybook``: every line's text normalized and
non-empty, its speaker known to the cast, its voice settled (the line's own ``voice_id``, else
its speaker's, else the engine's default voice for the book's language), the book within the
limits. Every error names the page and the line (``pages[2].lines[4]``, 0-based) so a client
can point at it. Voices are checked for existence and visibility by the caller (it needs the
voice catalog); ``voices_used`` lists the ones to check.
"""

from __future__ import annotations

import hashlib
import secrets
import time

import msgspec

from protocols.domain.ssml import InvalidMarkup, charged_characters, spoken_text
from protocols.domain.text import normalize_text, speakable
from protocols.errors import InvalidInput, TextEmpty, TextTooLong
from protocols.storybooks import NewLine, NewStorybook, StorybookRequest

#: a line's errors that another try will not fix: a retry round skips these unless forced
PERMANENT_ERRORS = frozenset({
    "provider_rejected", "voice_not_found", "voice_not_ready", "text_empty", "text_too_long",
    "invalid_input", "unsupported_language", "unsupported_output_format", "provider_forbidden",
    "pronunciation_dictionary_not_found",
})


class UnknownSpeaker(InvalidInput):
    code = "unknown_speaker"
    title = "Speaker not in the cast"


class StorybookTooLarge(InvalidInput):
    code = "storybook_too_large"
    status = 413
    title = "Storybook is too large"


def new_book_id() -> str:
    """``sb_`` + 12 hex digits of milliseconds + 16 random hex digits: unique, time-sortable."""
    return f"sb_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(8)}"


def new_line_id() -> str:
    return f"ln_{secrets.token_hex(10)}"


def line_job_key(book_id: str, line_id: str, round_: int) -> str:
    """The idempotency key of a line's job in a round: submitting it twice (a runner restarted
    between the submit and recording it) finds the same job."""
    return f"storybook:{book_id}:{line_id}:{round_}"


def request_hash(request: StorybookRequest) -> str:
    """sha256 of the request as asked (an idempotency key reused for another book is a 409)."""
    canonical = msgspec.to_builtins(msgspec.structs.replace(request, idempotency_key=None))
    if canonical.get("pronunciation_dictionary_locators") is None:  # as before the field
        canonical.pop("pronunciation_dictionary_locators", None)
    return hashlib.sha256(msgspec.json.encode(canonical, order="sorted")).hexdigest()


def _where(page: int, line: int | None = None) -> str:
    return f"pages[{page}]" if line is None else f"pages[{page}].lines[{line}]"


def plan(
    request: StorybookRequest,
    owner: str,
    *,
    output_format: str,
    default_voice: str,
    max_line_chars: int,
    max_lines: int,
    max_chars: int,
) -> NewStorybook:
    """The book as it will be stored. ``default_voice``: the voice of lines with neither a
    ``voice_id`` nor a speaker. Raises ``TextEmpty``, ``TextTooLong``, ``UnknownSpeaker``,
    ``StorybookTooLarge`` or ``InvalidInput``, each naming the page and line."""
    if not request.pages:
        raise InvalidInput("pages: a storybook needs at least one page.", field="pages")
    total = sum(len(p.lines) for p in request.pages)
    if total > max_lines:
        raise StorybookTooLarge(
            f"The book has {total} lines; the limit is {max_lines}.", limit=max_lines,
            lines=total,
        )
    book_id = new_book_id()
    lines: list[NewLine] = []
    characters = 0
    for p, page in enumerate(request.pages):
        if not page.lines:
            raise InvalidInput(f"{_where(p)} has no lines.", page=p)
        for i, line in enumerate(page.lines):
            where = _where(p, i)
            text = normalize_text(line.text)
            if not speakable(text):
                raise TextEmpty(f"{where}: text must contain something to say.", page=p, line=i)
            if len(text) > max_line_chars:
                raise TextTooLong(
                    f"{where}: text has {len(text)} characters; the limit is {max_line_chars}.",
                    page=p, line=i, limit=max_line_chars, characters=len(text),
                )
            member = None
            if line.speaker is not None:
                member = request.cast.get(line.speaker)
                if member is None:
                    known = ", ".join(sorted(request.cast)) or "none"
                    raise UnknownSpeaker(
                        f"{where}: speaker {line.speaker!r} is not in the cast (cast: {known}).",
                        page=p, line=i, speaker=line.speaker,
                    )
            voice = line.voice_id or (member.voice_id if member else None) or default_voice
            settings = member.voice_settings if member is not None and not line.voice_id else None
            charged = charged_line(text, p, i)
            characters += charged
            lines.append(NewLine(
                id=new_line_id(), page=p, index=i, text=text, voice_id=voice,
                speaker=line.speaker, voice_settings=settings, charged=charged,
            ))
    if characters > max_chars:
        raise StorybookTooLarge(
            f"The book has {characters} characters; the limit is {max_chars}.",
            limit=max_chars, characters=characters,
        )
    pauses = request.pause_ms
    return NewStorybook(
        id=book_id,
        owner=owner,
        title=request.title.strip() or request.title,
        language=(request.language or "").strip() or None,
        output_format=output_format,
        cast=dict(request.cast),
        pause_line_ms=pauses.line,
        pause_page_ms=pauses.page,
        page_titles=tuple(p.title for p in request.pages),
        lines=tuple(lines),
        metadata=request.metadata,
        idempotency_key=request.idempotency_key,
        request_hash=request_hash(request),
    )


def voices_used(book: NewStorybook) -> dict[str, tuple[int, int]]:
    """Each distinct voice id and the first line (page, index) that uses it."""
    first: dict[str, tuple[int, int]] = {}
    for line in book.lines:
        first.setdefault(line.voice_id, (line.page, line.index))
    return first


def charged_line(text: str, page: int, index: int) -> int:
    """The characters a line is charged for (as a job's: its SSML markup is not), once its
    markup is known to parse: ``InvalidMarkup`` (422) names the page and line at submit,
    instead of the line failing when its job is made."""
    try:
        spoken_text(text)
    except InvalidMarkup as exc:
        raise InvalidMarkup(f"{_where(page, index)}: {exc.detail}", page=page,
                            line=index) from exc
    return charged_characters(text)
