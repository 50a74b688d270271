"""The ``VoiceStore`` half of PgStore: voices in Postgres (SQL in
``protocols/postgres/voices_sql.py``).

Visibility is enforced in SQL: with a ``viewer``, another user's private voice is None (it does
not exist for them). Every write is idempotent or a compare-and-set, like the rest of the store.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from protocols.messages import NewVoice, Voice, VoiceInfo, VoiceStatus
from protocols.postgres import voices_sql as vq

T = TypeVar("T")


class VoiceStoreMixin:
    _call: Callable[..., Awaitable[Any]]

    async def upsert_default_voices(self, provider: str, voices: Sequence[VoiceInfo]) -> int:
        return await self._call(vq.upsert_defaults, provider, list(voices))

    async def count_default_voices(self, provider: str) -> int:
        return await self._call(vq.count_defaults, provider)

    async def create_voice(self, voice: NewVoice) -> Voice:
        return await self._call(vq.create_voice, voice)

    async def get_voice(self, voice_id: str, viewer: str | None = None) -> Voice | None:
        return await self._call(vq.get_voice, voice_id, viewer)

    async def voice_by_provider_id(self, provider: str, provider_voice_id: str) -> Voice | None:
        return await self._call(vq.voice_by_provider_id, provider, provider_voice_id)

    async def list_voices(
        self, viewer: str, provider: str, *, visibility: str | None = None,
        language: str | None = None, status: str | None = None, search: str | None = None,
        after: str | None = None, limit: int = 100,
    ) -> list[Voice]:
        return await self._call(
            vq.list_voices, viewer, provider, visibility, language, status, search, after, limit
        )

    async def update_voice(self, voice_id: str, owner: str, **changes: Any) -> Voice | None:
        changes = {k: v for k, v in changes.items() if v is not None}
        if not changes:
            return await self._call(vq.get_voice, voice_id, owner)
        return await self._call(vq.update_voice, voice_id, owner, changes)

    async def delete_voice(self, voice_id: str, owner: str) -> Voice | None:
        return await self._call(vq.delete_voice, voice_id, owner)

    async def settle_voice(
        self, voice_id: str, status: VoiceStatus, reason: str | None = None, *,
        preview_job_id: str | None = None,
    ) -> Voice | None:
        return await self._call(
            vq.settle_voice, voice_id, str(status), reason and reason[:2000], preview_job_id
        )

    async def set_voice_preview(
        self, voice_id: str, audio_id: str, *, job_id: str | None = None
    ) -> Voice | None:
        return await self._call(vq.set_preview, voice_id, audio_id, job_id)

    async def set_preview_job(self, voice_id: str, job_id: str) -> Voice | None:
        return await self._call(vq.set_preview_job, voice_id, job_id)

    async def drop_preview_job(self, voice_id: str, job_id: str) -> Voice | None:
        return await self._call(vq.drop_preview_job, voice_id, job_id)

    async def tracked_voices(self, provider: str) -> list[Voice]:
        return await self._call(vq.tracked_voices, provider)
