"""Chorus's pronunciation dictionaries kept at ElevenLabs (``DictionaryMirror``), through
``ElevenLabsProvider.call`` (our retry policy) and the SDK's ``pronunciation_dictionaries``.

Each Chorus dictionary is made there with ``add-from-rules`` and each change made there too
(``add-rules``, ``remove-rules``: both keyed by the rule's string, so doing one twice gives the
same rules); ElevenLabs answers each with a new version id, stored beside ours, and that locator
is what text-to-speech requests carry. A deleted dictionary is archived there (ElevenLabs has
no delete). Creating is not idempotent (a retry after a timeout could make a second copy), so
it is retried only when the request surely never arrived.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from protocols.dictionaries import Rule
from protocols.errors import DictionaryNotFound, ProviderRejected
from protocols.providers.elevenlabs.voices import Account


def _wire(rules: Sequence[Rule]) -> list[dict[str, Any]]:
    """Rules as ElevenLabs takes them (the same field names as ours)."""
    return [msgspec.to_builtins(rule) for rule in rules]


class ElevenLabsDictionaries:
    provider = "elevenlabs"

    def __init__(self, account: Account) -> None:
        self._account = account

    @property
    def _api(self) -> Any:
        return self._account.sdk.pronunciation_dictionaries

    async def create(self, name: str, description: str, rules: Sequence[Rule]) -> tuple[str, str]:
        extra = {"description": description} if description else {}
        made = await self._account.call(
            "dictionary", self._api.create_from_rules, rules=_wire(rules), name=name,
            idempotent=False, **extra,
        )
        return str(made.id), str(made.version_id)

    async def add_rules(self, dictionary_id: str, rules: Sequence[Rule]) -> str:
        changed = await self._change(self._api.rules.add, dictionary_id, rules=_wire(rules))
        return str(changed.version_id)

    async def remove_rules(self, dictionary_id: str, strings: Sequence[str]) -> str:
        changed = await self._change(
            self._api.rules.remove, dictionary_id, rule_strings=list(strings)
        )
        return str(changed.version_id)

    async def archive(self, dictionary_id: str) -> None:
        await self._change(self._api.update, dictionary_id, archived=True)

    async def _change(self, fn: Any, dictionary_id: str, **kwargs: Any) -> Any:
        try:
            return await self._account.call("dictionary", fn, dictionary_id, **kwargs)
        except ProviderRejected as exc:
            if exc.extra.get("provider_status") == 404:
                raise DictionaryNotFound(
                    f"The ElevenLabs copy of this dictionary ({dictionary_id}) is gone: "
                    f"{exc.detail}"
                ) from exc
            raise
