"""The JSON shapes of records on the HTTP API (shared by the routes)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

from protocols.messages import Job, Lane


def iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def job_view(job: Job) -> dict[str, Any]:
    """The JSON shape of a job (never the owner, the text or the request hash)."""
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
        view["audio_url"] = f"/v1/audio/{job.audio_id}"
    if job.idempotency_key is not None:
        view["idempotency_key"] = job.idempotency_key
    if job.metadata is not None:
        view["metadata"] = job.metadata
    if job.lane is not Lane.interactive:
        view["lane"] = job.lane.value
    return view
