"""A job's identity: its id, and the request hash an idempotent retry is compared by."""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

import msgspec

from protocols.messages import JobRequest

#: the request fields besides text, voice, language and format that shape the audio
_SHAPING = ("model_id", "preference", "voice_settings", "seed",
            "pronunciation_dictionary_locators")


def new_job_id() -> str:
    """``job_`` + 12 hex digits of milliseconds + 16 random hex digits: unique, time-sortable."""
    return f"job_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(8)}"


def request_hash(
    text: str, voice_id: str | None, language: str | None, fmt: str,
    req: JobRequest | None = None,
) -> str:
    """sha256 over the canonical request (as the client asked, after normalization). Fields
    added later only join when given, so an older request hashes as it always did."""
    canonical: list[Any] = ["v1", text, voice_id, language, fmt]
    if req is not None:
        extra = {f: msgspec.to_builtins(getattr(req, f)) for f in _SHAPING
                 if getattr(req, f) is not None}
        if extra:
            canonical.append(extra)
    return hashlib.sha256(msgspec.json.encode(canonical)).hexdigest()
