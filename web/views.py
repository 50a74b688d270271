"""The JSON shapes of records on the HTTP API (shared by the routes)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

from protocols.messages import Job, Lane
from protocols.storybooks import BookStatus, Line, LineStatus, RetryRound, Storybook
from web.signing import AudioSigner


def iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def job_view(job: Job, signer: AudioSigner | None = None) -> dict[str, Any]:
    """The JSON shape of a job (never the owner, the text or the request hash). With
    ``signer``, ``audio_url`` is a signed URL that works without an API key until it expires
    (``web/signing.py``)."""
    view: dict[str, Any] = {
        "id": job.id,
        "status": job.status.value,
        "attempts": job.attempts,
        "characters": job.characters,
        "voice_id": job.voice_id,
        "model_id": job.params.model_id or None,
        "output_format": job.output_format,
        "language": job.language,
        "cached": job.cached,
        "created_at": iso(job.created_at),
    }
    if job.params.voice_settings is not None:
        view["voice_settings"] = msgspec.to_builtins(job.params.voice_settings)
    if job.params.seed is not None:
        view["seed"] = job.params.seed
    if job.params.dictionaries:
        view["pronunciation_dictionary_locators"] = msgspec.to_builtins(job.params.dictionaries)
    if job.request_ids:
        view["request_ids"] = list(job.request_ids)
    if job.character_cost is not None:
        view["character_cost"] = job.character_cost
    if job.started_at is not None:
        view["started_at"] = iso(job.started_at)
    if job.finished_at is not None:
        view["finished_at"] = iso(job.finished_at)
    if job.error_code is not None:
        view["error"] = {"code": job.error_code, "message": job.error_message or ""}
    if job.audio_id is not None:
        view["audio_id"] = job.audio_id
        view["audio_url"] = (
            f"/v1/audio/{job.audio_id}" if signer is None
            else signer.url(job.audio_id, job.owner)
        )
    if job.idempotency_key is not None:
        view["idempotency_key"] = job.idempotency_key
    if job.metadata is not None:
        view["metadata"] = job.metadata
    if job.lane is not Lane.interactive:
        view["lane"] = job.lane.value
    if job.request_id is not None:
        view["request_id"] = job.request_id
    return view


def storybook_summary(book: Storybook) -> dict[str, Any]:
    """A book in lists and in the answer to a submit."""
    view: dict[str, Any] = {
        "id": book.id,
        "title": book.title,
        "status": book.status.value,
        "lines_total": book.lines_total,
        "characters": book.characters,
        "pages": len(book.page_titles),
        "language": book.language,
        "output_format": book.output_format,
        "round": book.round,
        "created_at": iso(book.created_at),
        "updated_at": iso(book.updated_at),
    }
    if book.finished_at is not None:
        view["finished_at"] = iso(book.finished_at)
    if book.dictionaries:
        view["pronunciation_dictionary_locators"] = msgspec.to_builtins(book.dictionaries)
    if book.cancel_requested and book.status is not BookStatus.cancelled:
        view["cancel_requested"] = True
    if book.metadata is not None:
        view["metadata"] = book.metadata
    if book.idempotency_key is not None:
        view["idempotency_key"] = book.idempotency_key
    return view


def line_view(line: Line) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": line.id,
        "index": line.index,
        "speaker": line.speaker,
        "voice_id": line.voice_id,
        "characters": line.characters,
        "status": line.status.value,
        "job_id": line.job_id,
        "attempts": line.attempts,
        "round": line.round,
    }
    if line.audio_id is not None:
        view["audio_id"] = line.audio_id
        view["audio_url"] = f"/v1/audio/{line.audio_id}"
    if line.duration_s is not None:
        view["duration_s"] = round(line.duration_s, 3)
    if line.error_code is not None:
        view["error"] = {"code": line.error_code, "message": line.error_message or ""}
    return view


def round_view(r: RetryRound) -> dict[str, Any]:
    return {
        "round": r.number,
        "requested_by": r.requested_by,
        "requested_at": iso(r.requested_at),
        "scope": r.scope,
        "forced": r.forced,
        "lines": list(r.line_ids),
        "succeeded": r.succeeded,
        "failed": r.failed,
        "finished_at": iso(r.finished_at),
    }


def storybook_view(
    book: Storybook, lines: list[Line], rounds: list[RetryRound]
) -> dict[str, Any]:
    """A book whole: counts by line status, each page and line, the retry rounds."""
    counts = dict.fromkeys((s.value for s in LineStatus), 0)
    pages: list[dict[str, Any]] = [
        {"index": n, "title": title, "lines": []} for n, title in enumerate(book.page_titles)
    ]
    for line in lines:
        counts[line.status.value] += 1
        pages[line.page]["lines"].append(line_view(line))
    view = storybook_summary(book)
    view["counts"] = counts
    view["cast"] = msgspec.to_builtins(book.cast)
    view["pause_ms"] = {"line": book.pause_line_ms, "page": book.pause_page_ms}
    view["pages"] = pages
    view["retry_rounds"] = [round_view(r) for r in rounds]
    if book.status.terminal and counts["succeeded"]:  # what the output routes will serve
        base = f"/v1/storybooks/{book.id}"
        view["outputs"] = {
            "audio": f"{base}/audio", "captions_vtt": f"{base}/captions.vtt",
            "captions_srt": f"{base}/captions.srt", "chapters": f"{base}/chapters",
        }
    return view
