"""The cache key: identical requests share one generation (and one audio file).

sha256 over everything that shapes the bytes: provider, model, voice, language, voice settings,
seed, pronunciation dictionaries with their pinned versions, output format and the normalized
text. With the per-owner cache scope (``CHORUS_CACHE_SCOPE=owner``) the owner is part of it too,
so users never share audio.
"""

from __future__ import annotations

import hashlib

import msgspec

from protocols.domain.text import normalize_text
from protocols.messages import Job, SpeechJob, SpeechParams

_VERSION = "k2"  # bump when the recipe changes (old keys then simply miss)


def cache_key(
    *,
    provider: str,
    text: str,
    voice_id: str,
    language: str | None,
    output_format: str,
    params: SpeechParams,
    owner: str | None = None,
) -> str:
    canonical = msgspec.json.encode(
        [
            _VERSION,
            provider,
            params.model_id,
            voice_id,
            language or "",
            msgspec.to_builtins(params.voice_settings) if params.voice_settings else None,
            params.seed,
            [[d.pronunciation_dictionary_id, d.version_id] for d in params.dictionaries],
            output_format,
            owner or "",
            normalize_text(text),
        ]
    )
    return hashlib.sha256(canonical).hexdigest()


def scoped_cache_key(
    *,
    owner: str,
    scope: str,
    provider: str,
    text: str,
    voice_id: str,
    language: str | None,
    output_format: str,
    params: SpeechParams,
) -> str:
    """The cache key of a job of ``owner`` under the cache scope (``Settings.cache_scope``):
    the owner is part of it only with the per-owner scope (the one place this rule lives)."""
    return cache_key(
        provider=provider, text=text, voice_id=voice_id, language=language,
        output_format=output_format, params=params,
        owner=owner if scope == "owner" else None,
    )


def job_cache_key(job: Job | SpeechJob, provider: str, scope: str = "global") -> str:
    """A job's cache key: the one settled at submit, else (stream entries from before it was
    carried) computed the same way."""
    if job.cache_key:
        return job.cache_key
    return scoped_cache_key(
        owner=job.owner, scope=scope, provider=provider, text=job.text, voice_id=job.voice_id,
        language=job.language, output_format=job.output_format, params=job.params,
    )
