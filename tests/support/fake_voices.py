"""In-memory fakes of the voice Protocols: ``FakeVoiceStoreMixin`` (mixed into
``FakeJobStore``), ``FakeVoiceManager`` (a cloning provider, driven by the test) and
``MemoryVoiceSyncQueue``."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import msgspec
import trio

from protocols.errors import CloningNotAllowed, ProviderUnavailable, UnknownVoice
from protocols.messages import (
    CloneFile,
    NewVoice,
    ProviderVoiceState,
    TrackedVoice,
    Visibility,
    Voice,
    VoiceInfo,
    VoiceSettings,
    VoiceStatus,
)

replace = msgspec.structs.replace


class FakeVoiceStoreMixin:
    """Voice rows for ``FakeJobStore`` (uses its ``_enter`` and ``clock``)."""

    _enter: Any
    clock: Any

    def _voices(self) -> dict[str, Voice]:
        if not hasattr(self, "_voice_rows"):
            self._voice_rows: dict[str, Voice] = {}
        return self._voice_rows

    async def upsert_default_voices(self, provider: str, voices: Sequence[VoiceInfo]) -> int:
        await self._enter("upsert_default_voices")
        rows = self._voices()
        keep = {v.voice_id for v in voices}
        for vid in [k for k, r in rows.items() if r.provider == provider
                    and r.visibility is Visibility.default and k not in keep]:
            del rows[vid]
        for v in voices:
            if v.voice_id not in rows:
                now = self.clock()
                rows[v.voice_id] = Voice(
                    id=v.voice_id, provider=provider, provider_voice_id=v.voice_id, owner=None,
                    name=v.name, description=v.description, labels={}, language=v.language,
                    languages=v.languages, category=v.category, status=VoiceStatus.completed,
                    status_reason=None, visibility=Visibility.default, preview_audio_id=None,
                    preview_job_id=None, created_at=now, updated_at=now,
                )
        return len(voices)

    async def count_default_voices(self, provider: str) -> int:
        await self._enter("count_default_voices")
        return sum(r.provider == provider and r.visibility is Visibility.default
                   for r in self._voices().values())

    async def create_voice(self, voice: NewVoice) -> Voice:
        await self._enter("create_voice", voice)
        rows = self._voices()
        if voice.id not in rows:
            now = self.clock()
            rows[voice.id] = Voice(
                **msgspec.structs.asdict(voice), preview_audio_id=None, preview_job_id=None,
                created_at=now, updated_at=now,
            )
        return rows[voice.id]

    async def get_voice(self, voice_id: str, viewer: str | None = None) -> Voice | None:
        await self._enter("get_voice", voice_id)
        row = self._voices().get(voice_id)
        if row is None or (viewer is not None and not row.visible_to(viewer)):
            return None
        return row

    async def voice_by_provider_id(self, provider: str, provider_voice_id: str) -> Voice | None:
        await self._enter("voice_by_provider_id", provider_voice_id)
        for row in self._voices().values():
            if row.provider == provider and row.provider_voice_id == provider_voice_id:
                return row
        return None

    async def list_voices(
        self, viewer: str, provider: str, *, visibility: str | None = None,
        language: str | None = None, status: str | None = None, search: str | None = None,
        after: str | None = None, limit: int = 100,
    ) -> list[Voice]:
        await self._enter("list_voices", language, search, after)

        def lang_ok(r: Voice) -> bool:
            langs = (r.language, *r.languages)
            return language is None or any(x.split("-")[0].lower() == language for x in langs)

        rows = sorted(
            (r for r in self._voices().values()
             if r.provider == provider and r.visible_to(viewer)
             and (visibility is None or r.visibility == visibility) and lang_ok(r)
             and (status is None or r.status == status)
             and (search is None or search.lower() in
                  " ".join([r.name, r.description, *r.labels.values()]).lower())
             and (after is None or r.id > after)),
            key=lambda r: r.id,
        )
        return rows[:limit]

    async def update_voice(self, voice_id: str, owner: str, **changes: Any) -> Voice | None:
        await self._enter("update_voice", voice_id, changes)
        row = self._voices().get(voice_id)
        if row is None or row.owner != owner:
            return None
        changes = {k: v for k, v in changes.items() if v is not None}
        if "visibility" in changes:
            changes["visibility"] = Visibility(changes["visibility"])
        if changes.get("voice_settings") == VoiceSettings():  # cleared, as Postgres stores it
            changes["voice_settings"] = None
        row = replace(row, **changes, updated_at=self.clock())
        self._voices()[voice_id] = row
        return row

    async def delete_voice(self, voice_id: str, owner: str) -> Voice | None:
        await self._enter("delete_voice")
        row = self._voices().get(voice_id)
        if row is None or row.owner != owner:
            return None
        return self._voices().pop(voice_id)

    async def settle_voice(
        self, voice_id: str, status: VoiceStatus, reason: str | None = None, *,
        preview_job_id: str | None = None,
    ) -> Voice | None:
        await self._enter("settle_voice")
        row = self._voices().get(voice_id)
        if row is not None and row.status is VoiceStatus.processing:
            row = replace(row, status=status, status_reason=reason,
                          preview_job_id=preview_job_id or row.preview_job_id,
                          updated_at=self.clock())
            self._voices()[voice_id] = row
        return row

    async def set_voice_preview(
        self, voice_id: str, audio_id: str, *, job_id: str | None = None
    ) -> Voice | None:
        await self._enter("set_voice_preview")
        row = self._voices().get(voice_id)
        if row is not None and (job_id is None or row.preview_job_id == job_id):
            row = replace(row, preview_audio_id=audio_id,
                          preview_audio_job_id=job_id or row.preview_job_id,
                          updated_at=self.clock())
            self._voices()[voice_id] = row
        return row

    async def set_preview_job(self, voice_id: str, job_id: str) -> Voice | None:
        await self._enter("set_preview_job")
        row = self._voices().get(voice_id)
        if row is not None:
            row = replace(row, preview_job_id=job_id, updated_at=self.clock())
            self._voices()[voice_id] = row
        return row

    async def drop_preview_job(self, voice_id: str, job_id: str) -> Voice | None:
        await self._enter("drop_preview_job")
        row = self._voices().get(voice_id)
        if row is not None and row.preview_job_id == job_id:
            row = replace(row, preview_job_id=row.preview_audio_job_id, updated_at=self.clock())
            self._voices()[voice_id] = row
        return row

    async def tracked_voices(self, provider: str) -> list[Voice]:
        await self._enter("tracked_voices")
        return [r for r in self._voices().values() if r.provider == provider and (
            r.status is VoiceStatus.processing or r.preview_pending)]


class FakeVoiceManager:
    """A provider that clones: voices start processing; the test sets ``states[id]``."""

    def __init__(self, provider: str = "fake", defaults: Sequence[VoiceInfo] = ()) -> None:
        self.provider = provider
        self.defaults = list(defaults)
        self.can_clone = True
        self.states: dict[str, ProviderVoiceState] = {}
        self.deleted: list[str] = []
        self.uploads: list[dict[str, Any]] = []
        self.polls = 0
        self.poll_errors: list[BaseException] = []
        self.edits: list[dict[str, Any]] = []
        self.edit_errors: list[BaseException] = []

    async def check_can_clone(self) -> None:
        await trio.lowlevel.checkpoint()
        if not self.can_clone:
            raise CloningNotAllowed("no cloning on this plan")

    async def clone(self, name: str, description: str, labels: dict[str, str],
                    files: Sequence[CloneFile]) -> tuple[str, bool]:
        await trio.lowlevel.checkpoint()
        pid = "pv_" + secrets.token_hex(6)
        self.states[pid] = ProviderVoiceState(state="processing")
        self.uploads.append(dict(name=name, description=description, labels=labels,
                                 files=[(f.filename, len(f.data)) for f in files], id=pid))
        return pid, False

    async def voice_state(self, provider_voice_id: str) -> ProviderVoiceState:
        await trio.lowlevel.checkpoint()
        self.polls += 1
        if self.poll_errors:
            raise self.poll_errors.pop(0)
        if provider_voice_id not in self.states:
            raise UnknownVoice(provider_voice_id)
        return self.states[provider_voice_id]

    async def delete(self, provider_voice_id: str) -> None:
        await trio.lowlevel.checkpoint()
        self.deleted.append(provider_voice_id)
        self.states.pop(provider_voice_id, None)

    async def edit(self, provider_voice_id: str, *, name: str, description: str,
                   labels: dict[str, str]) -> None:
        """Recorded in ``edits``; raises the next of ``edit_errors`` if any."""
        await trio.lowlevel.checkpoint()
        if self.edit_errors:
            raise self.edit_errors.pop(0)
        self.edits.append(dict(id=provider_voice_id, name=name, description=description,
                               labels=dict(labels)))

    async def default_voices(self) -> Sequence[VoiceInfo]:
        await trio.lowlevel.checkpoint()
        return list(self.defaults)


class MemoryVoiceSyncQueue:
    """``VoiceSyncQueue`` in memory (survives actor restarts when the test keeps it)."""

    def __init__(self) -> None:
        self.items: dict[str, TrackedVoice] = {}
        self.down = False

    async def _enter(self) -> None:
        await trio.lowlevel.checkpoint()
        if self.down:
            raise ProviderUnavailable("fake queue down")

    async def track(self, voice_id: str, due: float, deadline: float,
                    state: str = "processing") -> None:
        await self._enter()
        self.items.setdefault(voice_id, TrackedVoice(voice_id=voice_id, due=due,
                                                     deadline=deadline, state=state))

    async def status(self, voice_id: str) -> TrackedVoice | None:
        await self._enter()
        return self.items.get(voice_id)

    async def due(self, now: float, count: int) -> list[TrackedVoice]:
        await self._enter()
        return sorted((t for t in self.items.values() if t.due <= now),
                      key=lambda t: t.due)[:count]

    async def reschedule(self, voice_id: str, due: float, attempts: int,
                         state: str | None = None) -> None:
        await self._enter()
        old = self.items.get(voice_id)
        deadline = old.deadline if old else due
        state = state or (old.state if old else "processing")
        self.items[voice_id] = TrackedVoice(voice_id=voice_id, due=due, deadline=deadline,
                                            attempts=attempts, state=state)

    async def done(self, voice_id: str) -> None:
        await self._enter()
        self.items.pop(voice_id, None)

    async def tracked(self) -> list[TrackedVoice]:
        await self._enter()
        return list(self.items.values())
