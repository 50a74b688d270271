"""Pronunciation dictionaries as users see them: creating, changing (each change a new version),
deleting, which dictionaries a job applies, and the rules of a pinned version for the engines.
Used by the web front, the Intake and the providers (as their ``Lexicon``).

- **Visibility** like voices: another user's private dictionary, and a deleted one, does not
  exist for anyone else (``pronunciation_dictionary_not_found``, 404); a public one is usable by
  everyone and changed only by its owner (403).
- **Mirror**: with a provider that keeps dictionaries of its own (ElevenLabs), every dictionary
  is created there first and every change made there too; the provider's id and version are
  stored with ours, so its own locator is what gets sent.
- **Which dictionaries a job applies** (``resolve``): the ones it names, else its owner's
  defaults (``PUT /v1/user/pronunciation-dictionaries``); an explicit empty list applies none.
  A Chorus dictionary (``pd_...``) is pinned to its current version unless a version is named;
  any other id is the provider's own and passes through (the provider pins it).
- **Versions never change**, so the rules of a pinned version are kept in memory once read.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence

import trio

from protocols.dictionaries import (
    MAX_DESCRIPTION,
    MAX_LOCATORS,
    MAX_NAME,
    MAX_PER_USER,
    Dictionary,
    DictionaryVersion,
    NewDictionary,
    NewVersion,
    Rule,
    is_chorus_dictionary,
    new_dictionary_id,
    new_version_id,
)
from protocols.domain import pronunciation
from protocols.errors import (
    ChorusError,
    DictionaryNotFound,
    Forbidden,
    InvalidInput,
    StoreUnavailable,
)
from protocols.messages import DictionaryRef, User, Visibility
from protocols.ports import DictionaryMirror, DictionaryStore

log = logging.getLogger("chorus.dictionaries")

KEPT_VERSIONS = 1024  # pinned versions kept in memory (each at most MAX_RULES rules)
CHANGE_TRIES = 5  # a change racing others is built again on the newer version


def not_found(dictionary_id: str, version_id: str | None = None) -> DictionaryNotFound:
    """The one answer for a dictionary (or version) that does not exist for the caller."""
    if version_id is not None:
        return DictionaryNotFound(
            f"Pronunciation dictionary {dictionary_id!r} has no version {version_id!r}.",
            pronunciation_dictionary_id=dictionary_id, version_id=version_id,
        )
    return DictionaryNotFound(
        f"No pronunciation dictionary {dictionary_id!r}.",
        pronunciation_dictionary_id=dictionary_id,
    )


def check_name(value: object) -> str:
    name = " ".join(str(value or "").split())
    if not 1 <= len(name) <= MAX_NAME:
        raise InvalidInput(f"name must be 1 to {MAX_NAME} characters.", field="name",
                           limit=MAX_NAME)
    return name


def check_description(value: object) -> str:
    text = str(value or "").strip()
    if len(text) > MAX_DESCRIPTION:
        raise InvalidInput(f"description is longer than {MAX_DESCRIPTION} characters.",
                           field="description", limit=MAX_DESCRIPTION)
    return text


class DictionaryCatalog:
    """One per process (built in ``run.py``): the store and the provider's mirror, if any."""

    def __init__(
        self, store: DictionaryStore, mirror: DictionaryMirror | None = None,
        *, per_user: int = MAX_PER_USER,
    ) -> None:
        self.store, self.mirror = store, mirror
        self.per_user = per_user
        self._versions: OrderedDict[tuple[str, str], DictionaryVersion] = OrderedDict()

    # -- reading -----------------------------------------------------------------------------

    async def visible(self, dictionary_id: str, viewer: str) -> Dictionary:
        """The dictionary with its current rules; ``DictionaryNotFound`` if not the viewer's
        to see."""
        found = await self.store.get_dictionary(dictionary_id, viewer, rules=True)
        if found is None:
            raise not_found(dictionary_id)
        return found

    async def owned(self, dictionary_id: str, viewer: str) -> Dictionary:
        found = await self.visible(dictionary_id, viewer)
        if found.owner != viewer:
            raise Forbidden("Only the owner of a pronunciation dictionary can change it.")
        return found

    async def version_of(self, dictionary_id: str, version_id: str, viewer: str
                         ) -> DictionaryVersion:
        """A version of a dictionary the viewer can see (old versions stay readable)."""
        await self.visible(dictionary_id, viewer)
        version = await self.store.dictionary_version(dictionary_id, version_id)
        if version is None:
            raise not_found(dictionary_id, version_id)
        return version

    async def version(self, ref: DictionaryRef) -> DictionaryVersion:
        """``Lexicon``: the rules of a pinned version (no visibility: the job was checked when
        it was accepted). Kept in memory once read: versions never change."""
        if ref.version_id is None:
            raise not_found(ref.pronunciation_dictionary_id)
        key = (ref.pronunciation_dictionary_id, ref.version_id)
        hit = self._versions.get(key)
        if hit is not None:
            self._versions.move_to_end(key)
            return hit
        found = await self.store.dictionary_version(*key)
        if found is None:
            raise not_found(*key)
        self._versions[key] = found
        while len(self._versions) > KEPT_VERSIONS:
            self._versions.popitem(last=False)
        return found

    # -- which dictionaries a job applies ---------------------------------------------------------

    async def resolve(
        self, asked: Sequence[DictionaryRef] | None, viewer: str,
        defaults: Sequence[DictionaryRef] = (),
    ) -> tuple[DictionaryRef, ...]:
        """The dictionaries a job or book of ``viewer`` applies, Chorus ones pinned: ``asked``
        (an empty list: none), else ``defaults``, the user's (one gone since is skipped).
        Raises ``DictionaryNotFound`` for a named one the viewer cannot use, ``InvalidInput``
        for more than ``MAX_LOCATORS``."""
        if asked is not None:
            return await self.pin(asked, viewer)
        if not defaults:
            return ()
        return await self.pin(defaults, viewer, skip_missing=True)

    async def pin(
        self, refs: Sequence[DictionaryRef], viewer: str, *, skip_missing: bool = False
    ) -> tuple[DictionaryRef, ...]:
        if len(refs) > MAX_LOCATORS:
            raise InvalidInput(f"At most {MAX_LOCATORS} pronunciation dictionaries.",
                               field="pronunciation_dictionary_locators", limit=MAX_LOCATORS)
        ours = [
            i for i, r in enumerate(refs) if is_chorus_dictionary(r.pronunciation_dictionary_id)
        ]
        found = await self.store.resolve_dictionaries(
            [(refs[i].pronunciation_dictionary_id, refs[i].version_id) for i in ours], viewer
        )
        pinned = dict(zip(ours, found, strict=True))
        out: list[DictionaryRef] = []
        for i, ref in enumerate(refs):
            if i not in pinned:  # the provider's own dictionary: passed through
                out.append(ref)
                continue
            there, version = pinned[i]
            if version is None:
                if skip_missing:
                    log.info("default dictionary %s is gone; skipped", ref)
                    continue
                if not there:
                    raise not_found(ref.pronunciation_dictionary_id)
                raise not_found(ref.pronunciation_dictionary_id, ref.version_id)
            out.append(DictionaryRef(pronunciation_dictionary_id=ref.pronunciation_dictionary_id,
                                     version_id=version))
        if len({r.pronunciation_dictionary_id for r in out}) != len(out):
            raise InvalidInput("A pronunciation dictionary is named twice.",
                               field="pronunciation_dictionary_locators")
        return tuple(out)

    async def set_defaults(self, user: User, refs: Sequence[DictionaryRef]
                           ) -> tuple[DictionaryRef, ...]:
        """Check each locator (``DictionaryNotFound``) and store them as given: one without a
        version follows its dictionary's current version. Without a mirror the provider
        applies only Chorus's dictionaries, so another id is refused here rather than stored
        and then refused with every job of the user's."""
        if self.mirror is None:
            for ref in refs:
                if not is_chorus_dictionary(ref.pronunciation_dictionary_id):
                    raise not_found(ref.pronunciation_dictionary_id)
        await self.pin(refs, user.id)
        stored = tuple(refs)
        await self.store.set_user_dictionaries(user.id, stored)
        return stored

    # -- changes -----------------------------------------------------------------------------------

    async def create(
        self, *, owner: str, name: str, description: str, rules: Sequence[Rule],
        visibility: Visibility,
    ) -> Dictionary:
        cleaned = pronunciation.clean_rules(rules)
        remote: tuple[str, str] | None = None
        if self.mirror is not None:
            remote = await self.mirror.create(name, description, cleaned)
        new = NewDictionary(
            id=new_dictionary_id(), owner=owner, name=name, description=description,
            visibility=visibility, version_id=new_version_id(), rules=cleaned,
            provider=self.mirror.provider if remote else None,
            provider_dictionary_id=remote[0] if remote else None,
            provider_version_id=remote[1] if remote else None,
        )
        try:
            return await self.store.create_dictionary(new, limit=self.per_user)
        except BaseException:
            if remote is not None:
                await self._archive_quietly(remote[0])
            raise

    async def add_rules(self, dictionary_id: str, owner: str, rules: Sequence[Rule]
                        ) -> Dictionary:
        """A new version with ``rules`` added (a rule for a string already there replaces it)."""
        added = pronunciation.clean_rules(rules)
        return await self._change(
            dictionary_id, owner, lambda current: pronunciation.add_rules(current, added),
            lambda remote_id: self._mirror().add_rules(remote_id, added),
        )

    async def remove_rules(self, dictionary_id: str, owner: str, strings: Sequence[str]
                           ) -> Dictionary:
        """A new version without the rules for ``strings``."""
        gone = list(strings)
        return await self._change(
            dictionary_id, owner, lambda current: pronunciation.remove_rules(current, gone),
            lambda remote_id: self._mirror().remove_rules(remote_id, gone),
        )

    def _mirror(self) -> DictionaryMirror:
        assert self.mirror is not None
        return self.mirror

    async def _change(
        self, dictionary_id: str, owner: str,
        rebuild: Callable[[tuple[Rule, ...]], tuple[Rule, ...]],
        remote_change: Callable[[str], Awaitable[str]],
    ) -> Dictionary:
        for _ in range(CHANGE_TRIES):
            current = await self.owned(dictionary_id, owner)
            rules = rebuild(current.rules)
            remote_version = None
            if self.mirror is not None and current.provider == self.mirror.provider \
                    and current.provider_dictionary_id:
                # the same change there (add/remove are idempotent: a retry after losing the
                # race below makes the provider's next version hold both changes, like ours)
                remote_version = await remote_change(current.provider_dictionary_id)
            changed = await self.store.add_dictionary_version(NewVersion(
                dictionary_id=dictionary_id, owner=owner, based_on=current.version_id,
                version_id=new_version_id(), rules=rules, provider_version_id=remote_version,
            ))
            if changed is not None:
                return changed
        raise StoreUnavailable("The dictionary kept changing under this change; try again.")

    async def delete(self, dictionary_id: str, owner: str) -> Dictionary:
        current = await self.owned(dictionary_id, owner)
        deleted = await self.store.delete_dictionary(dictionary_id, owner)
        if deleted is None:
            raise not_found(dictionary_id)
        if current.provider_dictionary_id and self.mirror is not None \
                and current.provider == self.mirror.provider:
            await self._archive_quietly(current.provider_dictionary_id)
        return deleted

    async def _archive_quietly(self, remote_id: str) -> None:
        """Archive at the provider, best effort (a leftover there is harmless)."""
        assert self.mirror is not None
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            try:
                await self.mirror.archive(remote_id)
            except ChorusError as exc:  # logged: the provider keeps a stray copy
                log.warning("could not archive dictionary %s at %s: %s", remote_id,
                            self.mirror.provider, exc)
