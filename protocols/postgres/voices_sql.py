"""The SQL behind the voice half of PgStore (``protocols/postgres/voices.py``): asyncio-flavoured
functions of an asyncpg connection, like ``store_sql``; imports neither asyncio nor asyncpg."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from protocols.messages import (
    NewVoice,
    Visibility,
    Voice,
    VoiceInfo,
    VoiceSettings,
    VoiceStatus,
)

_VOICE = (
    "id, provider, provider_voice_id, owner, name, description, labels, language, languages,"
    " category, status, status_reason, visibility, preview_audio_id, preview_job_id,"
    " created_at, updated_at, voice_settings, preview_audio_job_id"
)
_VISIBLE = "(visibility <> 'private' OR owner = $2)"
_labels = msgspec.json.Decoder(dict[str, str])
_settings = msgspec.json.Decoder(VoiceSettings)
_NO_SETTINGS = VoiceSettings()
#: columns stored as JSON (``update_voice``)
_JSON_COLUMNS = frozenset({"labels", "voice_settings"})


def _voice(row: Any) -> Voice | None:
    if row is None:
        return None
    f = dict(row)
    return Voice(
        **{
            **f,
            "labels": _labels.decode(f["labels"]),
            "voice_settings": _voice_settings(f["voice_settings"]),
            "languages": tuple(f["languages"]),
            "status": VoiceStatus(f["status"]),
            "visibility": Visibility(f["visibility"]),
        }
    )


def _voice_settings(raw: str) -> VoiceSettings | None:
    """The stored defaults; ``{}`` (none set) is None."""
    settings = _settings.decode(raw)
    return None if settings == _NO_SETTINGS else settings


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


async def upsert_defaults(conn: Any, provider: str, voices: Sequence[VoiceInfo]) -> int:
    """Insert or refresh the provider's default voices, drop those it no longer has."""
    async with conn.transaction():
        await conn.executemany(
            "INSERT INTO voices (id, provider, provider_voice_id, owner, name, description,"
            " language, languages, category, status, visibility)"
            " VALUES ($1, $2, $1, NULL, $3, $4, $5, $6, $7, 'completed', 'default')"
            " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name,"
            " description = EXCLUDED.description, language = EXCLUDED.language,"
            " languages = EXCLUDED.languages, category = EXCLUDED.category, updated_at = now()"
            " WHERE voices.visibility = 'default' AND (voices.name, voices.description,"
            " voices.language, voices.languages, voices.category) IS DISTINCT FROM"
            " (EXCLUDED.name, EXCLUDED.description, EXCLUDED.language, EXCLUDED.languages,"
            " EXCLUDED.category)",
            [
                (v.voice_id, provider, v.name, v.description, v.language, list(v.languages),
                 v.category)
                for v in voices
            ],
        )
        await conn.execute(
            "DELETE FROM voices WHERE provider = $1 AND visibility = 'default'"
            " AND NOT (id = ANY($2::text[]))",
            provider, [v.voice_id for v in voices],
        )
    return len(voices)


async def count_defaults(conn: Any, provider: str) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM voices WHERE provider = $1 AND visibility = 'default'", provider
    )


async def create_voice(conn: Any, v: NewVoice) -> Voice:
    row = await conn.fetchrow(
        "INSERT INTO voices (id, provider, provider_voice_id, owner, name, description, labels,"
        " language, languages, category, status, status_reason, visibility)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10, $11, $12, $13)"
        f" ON CONFLICT (id) DO UPDATE SET id = EXCLUDED.id RETURNING {_VOICE}",
        v.id, v.provider, v.provider_voice_id, v.owner, v.name, v.description, _json(v.labels),
        v.language, list(v.languages), v.category, str(v.status), v.status_reason,
        str(v.visibility),
    )
    return _voice(row)


async def get_voice(conn: Any, voice_id: str, viewer: str | None) -> Voice | None:
    return _voice(await conn.fetchrow(
        f"SELECT {_VOICE} FROM voices WHERE id = $1 AND ($2::text IS NULL OR {_VISIBLE})",
        voice_id, viewer,
    ))


async def voice_by_provider_id(conn: Any, provider: str, provider_voice_id: str) -> Voice | None:
    return _voice(await conn.fetchrow(
        f"SELECT {_VOICE} FROM voices WHERE provider = $1 AND provider_voice_id = $2",
        provider, provider_voice_id,
    ))


async def list_voices(
    conn: Any, viewer: str, provider: str, visibility: str | None, language: str | None,
    status: str | None, search: str | None, after: str | None, limit: int,
) -> list[Voice]:
    rows = await conn.fetch(
        f"SELECT {_VOICE} FROM voices WHERE provider = $1 AND {_VISIBLE}"
        " AND ($3::text IS NULL OR visibility = $3)"
        " AND ($4::text IS NULL OR split_part(lower(language), '-', 1) = $4"
        "      OR EXISTS (SELECT 1 FROM unnest(languages) l"
        "                 WHERE split_part(lower(l), '-', 1) = $4))"
        " AND ($5::text IS NULL OR status = $5)"
        " AND ($6::text IS NULL OR strpos(lower(name || ' ' || description || ' '"
        "      || labels::text), lower($6)) > 0)"
        " AND ($7::text IS NULL OR id > $7)"
        " ORDER BY id LIMIT $8",
        provider, viewer, visibility, language, status, search, after, limit,
    )
    return [_voice(r) for r in rows]


async def update_voice(
    conn: Any, voice_id: str, owner: str, changes: dict[str, Any]
) -> Voice | None:
    sets, args = [], [voice_id, owner]
    for column, value in changes.items():
        as_json = column in _JSON_COLUMNS
        args.append(_json(value) if as_json else value)
        sets.append(f"{column} = ${len(args)}" + ("::jsonb" if as_json else ""))
    sets.append("updated_at = now()")
    return _voice(await conn.fetchrow(
        f"UPDATE voices SET {', '.join(sets)} WHERE id = $1 AND owner = $2 RETURNING {_VOICE}",
        *args,
    ))


async def delete_voice(conn: Any, voice_id: str, owner: str) -> Voice | None:
    return _voice(await conn.fetchrow(
        f"DELETE FROM voices WHERE id = $1 AND owner = $2 RETURNING {_VOICE}", voice_id, owner
    ))


async def settle_voice(
    conn: Any, voice_id: str, status: str, reason: str | None, preview_job_id: str | None
) -> Voice | None:
    """Compare-and-set processing -> completed | failed; the voice as it now is."""
    row = await conn.fetchrow(
        "UPDATE voices SET status = $2, status_reason = $3,"
        " preview_job_id = coalesce($4, preview_job_id), updated_at = now()"
        f" WHERE id = $1 AND status = 'processing' RETURNING {_VOICE}",
        voice_id, status, reason, preview_job_id,
    )
    return _voice(row) if row is not None else await get_voice(conn, voice_id, None)


async def set_preview(
    conn: Any, voice_id: str, audio_id: str, job_id: str | None
) -> Voice | None:
    """Link the audio of preview job ``job_id`` (None: of the latest one asked for), unless a
    newer preview has been asked for since (compare-and-set); the voice as it now is."""
    row = await conn.fetchrow(
        "UPDATE voices SET preview_audio_id = $2,"
        " preview_audio_job_id = coalesce($3, preview_job_id), updated_at = now()"
        " WHERE id = $1 AND ($3::text IS NULL OR preview_job_id = $3)"
        f" RETURNING {_VOICE}",
        voice_id, audio_id, job_id,
    )
    return _voice(row) if row is not None else await get_voice(conn, voice_id, None)


async def set_preview_job(conn: Any, voice_id: str, job_id: str) -> Voice | None:
    """A new preview was asked for: ``job_id`` is the latest (the current preview stays until
    its audio is linked)."""
    return _voice(await conn.fetchrow(
        "UPDATE voices SET preview_job_id = $2, updated_at = now()"
        f" WHERE id = $1 RETURNING {_VOICE}",
        voice_id, job_id,
    ))


async def drop_preview_job(conn: Any, voice_id: str, job_id: str) -> Voice | None:
    """Preview job ``job_id`` ended without audio: forget it if it is still the latest (the
    voice keeps the preview it had); the voice as it now is."""
    row = await conn.fetchrow(
        "UPDATE voices SET preview_job_id = preview_audio_job_id, updated_at = now()"
        f" WHERE id = $1 AND preview_job_id = $2 RETURNING {_VOICE}",
        voice_id, job_id,
    )
    return _voice(row) if row is not None else await get_voice(conn, voice_id, None)


async def tracked_voices(conn: Any, provider: str) -> list[Voice]:
    rows = await conn.fetch(
        f"SELECT {_VOICE} FROM voices WHERE provider = $1 AND (status = 'processing'"
        " OR (preview_job_id IS NOT NULL AND preview_job_id IS DISTINCT FROM"
        " preview_audio_job_id)) ORDER BY created_at",
        provider,
    )
    return [_voice(r) for r in rows]
