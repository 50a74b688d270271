"""Voice management on ElevenLabs (``VoiceManager``): instant voice cloning, readiness, editing,
deletion and the premade voices, through ``ElevenLabsProvider.call`` (our retry policy,
``max_retries=0``: the SDK's own retry drops the form fields of a retried multipart upload; ours
calls the SDK again with every field and every file, so a retried upload is whole).

When is a cloned voice ready? ElevenLabs does not document it. Our rule, on
``GET /v1/voices/{id}``: ``fine_tuning.state`` maps each model to a state; any ``failed`` means
failed (reason: ``fine_tuning.message`` for that model); any ``fine_tuning``, ``queued``,
``delayed`` or ``processing`` means still processing; anything else (``fine_tuned``,
``not_started`` — IVC voices are never fine-tuned —, or no state at all) means ready. A voice whose
add answered ``requires_verification: true`` is recorded as processing with that reason and then
follows the same rule.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from protocols.errors import (
    CloningNotAllowed,
    ProviderForbidden,
    ProviderRejected,
    UnknownVoice,
    VoiceLimitReached,
)
from protocols.messages import CloneFile, ProviderVoiceState, VoiceInfo

log = logging.getLogger("chorus.elevenlabs.voices")

T = TypeVar("T")


class Account(Protocol):
    """What the voice manager uses of an open ``ElevenLabsProvider`` (its SDK client, calls
    under its retry policy, the voice search), so this module need not import the provider."""

    @property
    def sdk(self) -> Any: ...

    async def call(self, what: str, fn: Callable[..., Awaitable[T]], *args: Any,
                   idempotent: bool = True, **kwargs: Any) -> T: ...

    async def search_voices(self, **filters: Any) -> dict[str, VoiceInfo]: ...

PROCESSING_STATES = frozenset({"fine_tuning", "queued", "delayed", "processing"})


FAILED_STATES = frozenset({"failed", "error"})


def _single_state(value: Any) -> str | None:
    """processing | failed | None for a one-string status (``status``, ``finetuning_state``)."""
    if not isinstance(value, str) or not value:
        return None
    text = value.lower()
    if text in FAILED_STATES:
        return "failed"
    if text in PROCESSING_STATES or text in ("is_fine_tuning", "pending", "in_progress"):
        return "processing"
    return None


def voice_state(raw: Mapping[str, Any]) -> ProviderVoiceState:
    """Our readiness rule (module docstring) on a Voice object. Also honoured, as other
    deployments of the API may answer with them: a one-string top-level ``status`` and the
    older ``fine_tuning.finetuning_state``."""
    fine_tuning = raw.get("fine_tuning") or {}
    for single in (raw.get("status"), fine_tuning.get("finetuning_state")):
        state = _single_state(single)
        if state == "failed":
            reason = raw.get("status_reason") or raw.get("message") or "voice processing failed"
            return ProviderVoiceState(state="failed", reason=str(reason))
        if state == "processing":
            return ProviderVoiceState(state="processing")
    states = fine_tuning.get("state") or {}
    messages = fine_tuning.get("message") or {}
    if not isinstance(states, Mapping):
        return ProviderVoiceState(state="ready")
    for model, state in states.items():
        if str(state) == "failed":
            reason = messages.get(model) if isinstance(messages, Mapping) else None
            reason = str(reason or "voice processing failed")
            return ProviderVoiceState(state="failed", reason=reason)
    if any(str(state) in PROCESSING_STATES for state in states.values()):
        return ProviderVoiceState(state="processing")
    return ProviderVoiceState(state="ready")


class ElevenLabsVoices:
    """``VoiceManager`` on an open ``ElevenLabsProvider`` (``Account``)."""

    provider = "elevenlabs"

    def __init__(self, el: Account) -> None:
        self._el = el

    async def check_can_clone(self) -> None:
        sdk = self._el.sdk
        sub = (await self._el.call("subscription", sdk.user.subscription.get)).model_dump()
        if not sub.get("can_use_instant_voice_cloning", True):
            raise CloningNotAllowed(
                "The ElevenLabs plan of this service does not include instant voice cloning."
            )
        used, limit = sub.get("voice_slots_used"), sub.get("voice_limit")
        if used is not None and limit is not None and int(used) >= int(limit):
            raise VoiceLimitReached(
                f"All {limit} voice slots of the provider account are in use.", voice_limit=limit
            )

    async def clone(
        self, name: str, description: str, labels: dict[str, str], files: Sequence[CloneFile]
    ) -> tuple[str, bool]:
        uploads = [(f.filename, f.data, f.content_type) for f in files]
        kwargs: dict[str, Any] = {"name": name, "files": uploads}
        if description:
            kwargs["description"] = description
        if labels:
            kwargs["labels"] = dict(labels)
        try:
            added = await self._el.call(
                "voice clone", self._el.sdk.voices.ivc.create, idempotent=False, **kwargs
            )
        except ProviderForbidden as exc:
            raise CloningNotAllowed(exc.detail) from exc
        except ProviderRejected as exc:
            if exc.extra.get("provider_code") == "voice_limit_reached":
                raise VoiceLimitReached(exc.detail) from exc
            raise
        return str(added.voice_id), bool(getattr(added, "requires_verification", False))

    async def voice_state(self, provider_voice_id: str) -> ProviderVoiceState:
        try:
            voice = await self._el.call("voice", self._el.sdk.voices.get, provider_voice_id)
        except ProviderRejected as exc:  # 400 on a malformed id
            raise UnknownVoice(f"voice {provider_voice_id!r} does not exist") from exc
        return voice_state(voice.model_dump())

    async def delete(self, provider_voice_id: str) -> None:
        try:
            await self._el.call("voice delete", self._el.sdk.voices.delete, provider_voice_id)
        except UnknownVoice:
            log.info("voice %s was already gone at ElevenLabs", provider_voice_id)

    async def edit(
        self, provider_voice_id: str, *, name: str, description: str, labels: dict[str, str]
    ) -> None:
        """``POST /v1/voices/{id}/edit`` (multipart) with the name (required by ElevenLabs),
        the description and the labels as they are to be: labels are replaced whole. Safe to
        send again (it sets values), so it is retried like any idempotent call."""
        try:
            await self._el.call(
                "voice edit", self._el.sdk.voices.update, provider_voice_id, name=name,
                description=description, labels=dict(labels),
            )
        except UnknownVoice as exc:  # gone at ElevenLabs: not "no such voice" in Chorus
            raise ProviderRejected(
                f"voice {provider_voice_id!r} no longer exists at ElevenLabs; nothing was"
                " changed", provider_code="voice_not_found",
            ) from exc

    async def default_voices(self) -> Sequence[VoiceInfo]:
        """The premade voices, every page of ``GET /v2/voices?voice_type=default``."""
        return list((await self._el.search_voices(voice_type="default")).values())
