"""What local providers (the embedded engine, the built-in fake) share: one model, nothing to
meter, no account to protect, no cloning (``LocalVoices``); and how any provider names its
account."""

from __future__ import annotations

import hashlib

import msgspec

from protocols.errors import InvalidInput
from protocols.messages import SpeechParams, VoiceInfo
from protocols.ports import VoiceManager
from protocols.providers.local_voices import LocalVoices


def account_name(provider: str, secret: str = "") -> str:
    """Names a provider account (whose slots the global semaphore counts): the provider and a
    hash of its credential, so two deployments on one Redis with different keys do not share
    slots, and the key itself is never in Redis."""
    return f"{provider}-{hashlib.sha256(secret.encode()).hexdigest()[:16]}"


class LocalProvider:
    name: str
    model_id: str  # the one "model" this provider has
    #: calls do not draw on a metered account shared by every worker (no global semaphore)
    shared_account = False

    async def prepare(
        self,
        text: str,
        voice: VoiceInfo,
        language: str | None,
        params: SpeechParams,
        preference: str | None = None,
    ) -> SpeechParams:
        if params.model_id and params.model_id != self.model_id:
            raise InvalidInput(
                f"model_id {params.model_id!r} is not offered by the {self.name} provider"
                f" (it has {self.model_id!r})",
                models=[self.model_id],
            )
        if params.dictionaries:
            raise InvalidInput(
                f"pronunciation dictionaries are not supported by the {self.name} provider"
            )
        return msgspec.structs.replace(params, model_id=self.model_id)

    async def remaining_characters(self) -> int | None:
        return None

    @property
    def account(self) -> str:
        return account_name(self.name)

    def voice_manager(self) -> VoiceManager:
        return LocalVoices(self)
