"""The ``DictionaryStore`` half of PgStore: pronunciation dictionaries, their versions and users'
defaults in Postgres (SQL in ``protocols/postgres/dictionaries_sql.py``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from protocols.dictionaries import Dictionary, DictionaryVersion, NewDictionary, NewVersion
from protocols.messages import DictionaryRef
from protocols.postgres import dictionaries_sql as dq


class DictionaryStoreMixin:
    _call: Callable[..., Awaitable[Any]]

    async def create_dictionary(self, new: NewDictionary, *, limit: int) -> Dictionary:
        return await self._call(dq.create_dictionary, new, limit)

    async def get_dictionary(
        self, dictionary_id: str, viewer: str | None = None, *, rules: bool = False
    ) -> Dictionary | None:
        return await self._call(dq.get_dictionary, dictionary_id, viewer, rules)

    async def list_dictionaries(
        self, viewer: str, *, after: str | None = None, limit: int = 100
    ) -> list[Dictionary]:
        return await self._call(dq.list_dictionaries, viewer, after, limit)

    async def add_dictionary_version(self, new: NewVersion) -> Dictionary | None:
        return await self._call(dq.add_version, new)

    async def delete_dictionary(self, dictionary_id: str, owner: str) -> Dictionary | None:
        return await self._call(dq.delete_dictionary, dictionary_id, owner)

    async def dictionary_version(
        self, dictionary_id: str, version_id: str
    ) -> DictionaryVersion | None:
        return await self._call(dq.get_version, dictionary_id, version_id)

    async def resolve_dictionaries(
        self, refs: Sequence[tuple[str, str | None]], viewer: str
    ) -> list[tuple[bool, str | None]]:
        if not refs:
            return []
        return await self._call(dq.resolve, list(refs), viewer)

    async def set_user_dictionaries(self, user_id: str, refs: Sequence[DictionaryRef]) -> None:
        await self._call(dq.set_user_dictionaries, user_id, list(refs))
