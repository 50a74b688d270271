"""The SQL behind the dictionary half of PgStore (``protocols/postgres/dictionaries.py``):
asyncio-flavoured functions of an asyncpg connection, like ``voices_sql``; imports neither
asyncio nor asyncpg.

A change is a compare-and-set on the current version (``add_version``): two concurrent changes
cannot both build on the same version. Versions are only ever inserted. Visibility is enforced
in SQL: with a ``viewer``, another user's private dictionary is None, as is a deleted one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from protocols.dictionaries import (
    Dictionary,
    DictionaryVersion,
    NewDictionary,
    NewVersion,
    Rule,
)
from protocols.errors import DictionaryLimitReached, InvalidInput
from protocols.messages import DictionaryRef, Visibility
from protocols.postgres.jobs_sql import FOREIGN_KEY_VIOLATION

_DICT = (
    "d.id, d.owner, d.name, d.description, d.visibility, d.current_version_id AS version_id,"
    " d.rules_num, d.created_at, d.updated_at, d.provider, d.provider_dictionary_id"
)
_LIVE_VISIBLE = (
    "d.deleted_at IS NULL AND ($2::text IS NULL OR d.visibility = 'public' OR d.owner = $2)"
)
_rules = msgspec.json.Decoder(tuple[Rule, ...])
_refs = msgspec.json.Decoder(tuple[DictionaryRef, ...])


def encode_rules(rules: Sequence[Rule]) -> str:
    return msgspec.json.encode(list(rules)).decode()


def decode_refs(value: str | None) -> tuple[DictionaryRef, ...]:
    return _refs.decode(value) if value else ()


def encode_refs(refs: Sequence[DictionaryRef]) -> str:
    return msgspec.json.encode(list(refs)).decode()


def _dictionary(row: Any) -> Dictionary | None:
    if row is None:
        return None
    fields = dict(row)
    rules = fields.pop("rules", None)
    fields["visibility"] = Visibility(fields["visibility"])
    return Dictionary(**fields, rules=_rules.decode(rules) if rules is not None else ())


async def create_dictionary(conn: Any, new: NewDictionary, limit: int) -> Dictionary:
    """Insert the dictionary and its first version; ``DictionaryLimitReached`` if the owner
    has ``limit`` live ones (counted under a lock on the owner's row)."""
    try:
        async with conn.transaction():
            owner = "SELECT 1 FROM users WHERE id = $1 FOR UPDATE"
            if await conn.fetchval(owner, new.owner) is None:
                raise InvalidInput("unknown dictionary owner")
            live = await conn.fetchval(
                "SELECT count(*) FROM pronunciation_dictionaries"
                " WHERE owner = $1 AND deleted_at IS NULL", new.owner,
            )
            if live >= limit:
                raise DictionaryLimitReached(
                    f"You have {live} pronunciation dictionaries; the limit is {limit}."
                    " Delete one first.", limit=limit,
                )
            await conn.execute(
                "INSERT INTO pronunciation_dictionaries (id, owner, name, description,"
                " visibility, provider, provider_dictionary_id, current_version_id, rules_num)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                new.id, new.owner, new.name, new.description, str(new.visibility),
                new.provider, new.provider_dictionary_id, new.version_id, len(new.rules),
            )
            await conn.execute(
                "INSERT INTO pronunciation_dictionary_versions (dictionary_id, version_id,"
                " rules, rules_num, provider_version_id) VALUES ($1, $2, $3::jsonb, $4, $5)",
                new.id, new.version_id, encode_rules(new.rules), len(new.rules),
                new.provider_version_id,
            )
    except Exception as exc:
        if getattr(exc, "sqlstate", None) != FOREIGN_KEY_VIOLATION:
            raise
        raise InvalidInput("unknown dictionary owner") from exc
    found = await get_dictionary(conn, new.id, None, True)
    assert found is not None
    return found


async def get_dictionary(
    conn: Any, dictionary_id: str, viewer: str | None, with_rules: bool
) -> Dictionary | None:
    rules = ", v.rules" if with_rules else ""
    join = (
        " JOIN pronunciation_dictionary_versions v ON v.dictionary_id = d.id"
        " AND v.version_id = d.current_version_id" if with_rules else ""
    )
    return _dictionary(await conn.fetchrow(
        f"SELECT {_DICT}{rules} FROM pronunciation_dictionaries d{join}"
        f" WHERE d.id = $1 AND {_LIVE_VISIBLE}",
        dictionary_id, viewer,
    ))


async def list_dictionaries(
    conn: Any, viewer: str, after: str | None, limit: int
) -> list[Dictionary]:
    """The viewer's own and the public dictionaries, by id, after the id ``after``."""
    rows = await conn.fetch(
        f"SELECT {_DICT} FROM pronunciation_dictionaries d WHERE d.deleted_at IS NULL"
        " AND (d.visibility = 'public' OR d.owner = $1)"
        " AND ($2::text IS NULL OR d.id > $2) ORDER BY d.id LIMIT $3",
        viewer, after, limit,
    )
    return [d for d in map(_dictionary, rows) if d is not None]


async def add_version(conn: Any, new: NewVersion) -> Dictionary | None:
    """Insert the version and make it current if ``based_on`` still is (the owner's live
    dictionary); None otherwise (nothing written)."""
    async with conn.transaction():
        moved = await conn.fetchval(
            "UPDATE pronunciation_dictionaries SET current_version_id = $4, rules_num = $5,"
            " updated_at = now() WHERE id = $1 AND owner = $2 AND current_version_id = $3"
            " AND deleted_at IS NULL RETURNING id",
            new.dictionary_id, new.owner, new.based_on, new.version_id, len(new.rules),
        )
        if moved is None:
            return None
        await conn.execute(
            "INSERT INTO pronunciation_dictionary_versions (dictionary_id, version_id, rules,"
            " rules_num, provider_version_id) VALUES ($1, $2, $3::jsonb, $4, $5)",
            new.dictionary_id, new.version_id, encode_rules(new.rules), len(new.rules),
            new.provider_version_id,
        )
    return await get_dictionary(conn, new.dictionary_id, None, True)


async def delete_dictionary(conn: Any, dictionary_id: str, owner: str) -> Dictionary | None:
    """Mark the owner's dictionary deleted and take it out of every user's defaults."""
    async with conn.transaction():
        row = await conn.fetchrow(
            f"UPDATE pronunciation_dictionaries d SET deleted_at = now(), updated_at = now()"
            f" WHERE d.id = $1 AND d.owner = $2 AND d.deleted_at IS NULL RETURNING {_DICT}",
            dictionary_id, owner,
        )
        if row is None:
            return None
        await conn.execute(
            "UPDATE users SET pronunciation_dictionaries = coalesce((SELECT jsonb_agg(e)"
            " FROM jsonb_array_elements(pronunciation_dictionaries) e"
            " WHERE e->>'pronunciation_dictionary_id' <> $1), '[]')"
            " WHERE pronunciation_dictionaries @> jsonb_build_array("
            "jsonb_build_object('pronunciation_dictionary_id', $1::text))",
            dictionary_id,
        )
    return _dictionary(row)


async def get_version(conn: Any, dictionary_id: str, version_id: str) -> DictionaryVersion | None:
    """A version, whatever became of its dictionary since (pinned jobs still speak with it)."""
    row = await conn.fetchrow(
        "SELECT v.dictionary_id, v.version_id, v.rules, v.created_at, d.provider,"
        " d.provider_dictionary_id, v.provider_version_id"
        " FROM pronunciation_dictionary_versions v"
        " JOIN pronunciation_dictionaries d ON d.id = v.dictionary_id"
        " WHERE v.dictionary_id = $1 AND v.version_id = $2",
        dictionary_id, version_id,
    )
    if row is None:
        return None
    fields = dict(row)
    return DictionaryVersion(**{**fields, "rules": _rules.decode(fields["rules"])})


async def resolve(
    conn: Any, refs: Sequence[tuple[str, str | None]], viewer: str
) -> list[tuple[bool, str | None]]:
    """For each (dictionary id, version or None): whether the dictionary is there for the
    viewer (live, theirs or public), and the version to pin (the asked one if it is the
    dictionary's, else None; the current one when none was asked)."""
    rows = await conn.fetch(
        "SELECT i.ord, d.id IS NOT NULL AS found, CASE WHEN i.ver IS NULL"
        " THEN d.current_version_id ELSE (SELECT v.version_id FROM"
        " pronunciation_dictionary_versions v WHERE v.dictionary_id = d.id"
        " AND v.version_id = i.ver) END AS version"
        " FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS i(id, ver, ord)"
        " LEFT JOIN pronunciation_dictionaries d ON d.id = i.id AND d.deleted_at IS NULL"
        " AND (d.visibility = 'public' OR d.owner = $3) ORDER BY i.ord",
        [r[0] for r in refs], [r[1] for r in refs], viewer,
    )
    return [(bool(r["found"]), r["version"]) for r in rows]


async def set_user_dictionaries(conn: Any, user_id: str, refs: Sequence[DictionaryRef]) -> None:
    await conn.execute(
        "UPDATE users SET pronunciation_dictionaries = $2::jsonb WHERE id = $1",
        user_id, encode_refs(refs),
    )
