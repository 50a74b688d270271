"""A finished book's outputs: the whole book's audio, one page's, captions and chapters.

The book's succeeded lines are fetched (each distinct audio once), stitched in reading order
with the book's pauses by ``protocols.domain.assembly`` in a worker thread (PyAV; never on the
event loop), and the whole-book result is stored as two blobs, the audio and its timeline, so
it is made once and reused (``Storybook.audio_path``; a retry round forgets it). Captions and
chapters come from the same timeline, so they match the audio to the sample. Failed or
cancelled lines are skipped and listed. A small in-process cache keeps the last few results.
"""

from __future__ import annotations

import collections
from functools import partial
from typing import Any

import msgspec
import trio

from protocols.domain import captions as caption_files
from protocols.domain.assembly import Assembled, Clip, Skipped, assemble
from protocols.errors import NotFound
from protocols.ports import BlobStore, BookStore
from protocols.storybooks import Line, LineStatus, Storybook

CACHE_SIZE = 4
FETCH_CONCURRENCY = 8


class BookAudio(msgspec.Struct, frozen=True, kw_only=True):
    data: bytes
    content_type: str
    extension: str
    skipped: list[str]  # line ids not in the audio, in reading order


def _timeline_key(book: Storybook) -> str:
    """Blob key of a book's assembled audio (and, with the ``json`` extension, its timeline):
    per round, so a retry makes a new one."""
    return f"storybook-{book.id}-r{book.round}"


class BookOutputs:
    def __init__(self, store: BookStore, blobs: BlobStore) -> None:
        self._store = store
        self._blobs = blobs
        self._cache: collections.OrderedDict[tuple[Any, ...], Assembled] = (
            collections.OrderedDict()
        )
        self._locks: dict[tuple[Any, ...], trio.Lock] = {}

    async def audio(self, book: Storybook, page: int | None = None) -> BookAudio:
        made = await self.assembled(book, page)
        return BookAudio(
            data=made.audio, content_type=made.content_type,
            extension=made.format.split("_", 1)[0],
            skipped=[s.line_id for s in made.skipped],
        )

    async def captions(self, book: Storybook, kind: str) -> tuple[str, list[str]]:
        made = await self.assembled(book)
        text = caption_files.to_vtt(made) if kind == "vtt" else caption_files.to_srt(made)
        return text, [s.line_id for s in made.skipped]

    async def chapters(self, book: Storybook) -> dict[str, Any]:
        made = await self.assembled(book)
        return {"storybook_id": book.id, **caption_files.chapters_document(made)}

    async def assembled(self, book: Storybook, page: int | None = None) -> Assembled:
        key = (book.id, book.round, book.finished_at, page)
        lock = self._locks.setdefault(key, trio.Lock())
        async with lock:  # one assembly per book at a time in this process
            try:
                if (hit := self._cache.get(key)) is not None:
                    self._cache.move_to_end(key)
                    return hit
                made = await self._stored(book) if page is None else None
                if made is None:
                    made = await self._assemble(book, page)
                    if page is None:
                        await self._keep(book, made)
                self._cache[key] = made
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
                return made
            finally:
                if not lock.statistics().tasks_waiting:
                    self._locks.pop(key, None)

    async def _stored(self, book: Storybook) -> Assembled | None:
        if book.audio_path is None:
            return None
        stem = book.audio_path.rsplit(".", 1)[0]
        try:
            audio = await self._blobs.get(book.audio_path)
            timeline = await self._blobs.get(f"{stem}.json")
        except FileNotFoundError:
            return None  # made again below
        made = msgspec.json.decode(timeline, type=Assembled)
        return msgspec.structs.replace(made, audio=audio)

    async def _keep(self, book: Storybook, made: Assembled) -> None:
        key = _timeline_key(book)
        timeline = msgspec.json.encode(msgspec.structs.replace(made, audio=b""))
        await self._blobs.put(key, "json", timeline)
        path = await self._blobs.put(key, made.format.split("_", 1)[0], made.audio)
        await self._store.set_storybook_audio(book.id, path)

    async def _assemble(self, book: Storybook, page: int | None) -> Assembled:
        lines = [
            line for line in await self._store.storybook_lines(book.id)
            if page is None or line.page == page
        ]
        audio = await self._fetch(book, lines)
        clips, skipped = [], []
        for line in lines:
            data = audio.get(line.audio_id or "")
            if line.status is LineStatus.succeeded and data is not None:
                clips.append(Clip(
                    line_id=line.id, page=line.page, index=line.index, audio=data[1],
                    format=data[0], speaker=line.speaker, text=line.text,
                ))
            else:
                skipped.append(Skipped(
                    line_id=line.id, page=line.page, index=line.index,
                    status=line.status.value, error_code=line.error_code,
                ))
        return await trio.to_thread.run_sync(partial(
            assemble, clips, output_format=book.output_format,
            pause_line_ms=book.pause_line_ms, pause_page_ms=book.pause_page_ms,
            skipped=skipped, page_titles=book.page_titles, page=page,
        ))

    async def _fetch(self, book: Storybook, lines: list[Line]) -> dict[str, tuple[str, bytes]]:
        """Each distinct audio of the succeeded lines: (format, bytes) by audio id; the rows in
        one statement, the files read a few at a time."""
        wanted = sorted({line.audio_id for line in lines
                         if line.status is LineStatus.succeeded and line.audio_id})
        rows = {row.id: row for row in await self._store.get_audios(wanted, book.owner)}
        if missing := [a for a in wanted if a not in rows]:
            raise NotFound(f"audio {missing[0]} of storybook {book.id} is gone")
        found: dict[str, tuple[str, bytes]] = {}
        limiter = trio.CapacityLimiter(FETCH_CONCURRENCY)

        async def one(audio_id: str) -> None:
            async with limiter:
                row = rows[audio_id]
                found[audio_id] = (row.format, await self._blobs.get(row.path))

        async with trio.open_nursery() as nursery:
            for audio_id in wanted:
                nursery.start_soon(one, audio_id)
        return found
