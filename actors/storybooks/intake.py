"""Submitting a storybook: the book checked whole, then stored whole, or nothing.

The book's structure and limits are checked by ``protocols.domain.storybooks.plan``; here the
parts that need the world: the output format against the provider, the default voice of the
book's language, and every distinct voice for existence and visibility (another user's private
voice is "not found", as for a single job), and the book's pronunciation dictionaries (its own,
else the owner's defaults), pinned to their versions here so every line, in every retry round,
speaks the same way. Then one transaction stores the book and its lines
with the whole book checked against the user's quota (all or nothing). No job exists yet: the
StorybookRunner releases the lines into the batch lane, a few at a time.

Cancelling a book (``cancel``) marks it in Redis before the cancel reaches Postgres: a worker
that reads one of its lines after that waits for the line's start (which knows about the cancel)
before calling the provider, while the lines of a live book may call it at once
(``actors.pipeline.tts_actor``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import msgspec

from actors.pipeline.intake import check_metadata, pin_dictionaries
from protocols.domain.dictionaries import DictionaryCatalog
from protocols.domain.languages import check_language
from protocols.domain.storybooks import plan, voices_used
from protocols.domain.voices import VoiceCatalog
from protocols.errors import ChorusError, UnsupportedFormat
from protocols.messages import DEFAULT_FORMAT, User
from protocols.ports import SpeechProvider, StorybookStore
from protocols.settings import Settings
from protocols.storybooks import Storybook, StorybookRequest

log = logging.getLogger("chorus.storybooks")


def _nothing() -> None:
    return None


async def _no_marker(book_id: str) -> None:
    return None


class StorybookIntake:
    def __init__(
        self,
        settings: Settings,
        *,
        store: StorybookStore,
        provider: SpeechProvider,
        voices: VoiceCatalog,
        kick: Callable[[], None] = _nothing,
        dictionaries: DictionaryCatalog | None = None,
        mark_cancelled: Callable[[str], Awaitable[None]] = _no_marker,
    ) -> None:
        self.settings = settings
        self.store, self.provider, self.voices = store, provider, voices
        self.dictionaries = dictionaries
        #: tell this process' runner a book is waiting (else it finds it on its next pass)
        self._kick = kick
        #: set the book's cancel marker in Redis (``Coordinator.mark_book_cancelled``)
        self._mark_cancelled = mark_cancelled

    async def submit(self, request: StorybookRequest, user: User) -> tuple[Storybook, bool]:
        """The accepted book and whether this call created it (False: an idempotent repeat).
        Raises the typed error of the first problem found, naming its page and line."""
        s = self.settings
        check_metadata(request.metadata, s.max_metadata_bytes)
        fmt = request.output_format or DEFAULT_FORMAT
        formats = self.provider.formats()
        if fmt not in formats:
            raise UnsupportedFormat(
                f"output_format {fmt!r} is not supported.", supported=sorted(formats)
            )
        language = (request.language or "").strip() or None
        check_language(language, s.supported_languages)  # CHORUS_SUPPORTED_LANGUAGES
        default = await self.voices.for_job(None, language, user.id)
        book = plan(
            request, user.id, output_format=fmt, default_voice=default.voice_id,
            max_line_chars=s.max_text_chars, max_lines=s.storybook_max_lines,
            max_chars=s.storybook_max_chars,
        )
        for voice_id, (page, index) in voices_used(book).items():
            if voice_id == default.voice_id:
                continue
            try:
                await self.voices.for_job(voice_id, language, user.id)
            except ChorusError as exc:  # voice_not_found, voice_not_ready: name the line
                where = f"pages[{page}].lines[{index}]"
                raise type(exc)(
                    f"{where}: {exc.detail}", **{**exc.extra, "page": page, "line": index}
                ) from None
        pinned = await pin_dictionaries(
            self.dictionaries, request.pronunciation_dictionary_locators, user.id,
            user.dictionaries,
        )
        if pinned:
            book = msgspec.structs.replace(book, dictionaries=pinned)
        stored, created = await self.store.create_storybook(book, quota=user.monthly_quota)
        if created:
            self._kick()
        return stored, created

    async def cancel(self, book_id: str, owner: str) -> Storybook | None:
        """Cancel the owner's book (``StorybookStore.cancel_storybook``: pending lines and
        lines whose job is still queued are cancelled, running ones finish), its cancel marker
        set in Redis first. None if it is not the owner's. Redis away: the cancel goes on
        without the marker (a queued line read later may then be generated, never charged)."""
        try:
            await self._mark_cancelled(book_id)
        except ChorusError as exc:
            log.warning("storybook %s: cancel marker not set: %s", book_id, exc)
        book = await self.store.cancel_storybook(book_id, owner)
        if book is not None:
            self._kick()
        return book
