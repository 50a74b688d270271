"""Pronunciation dictionaries: rules, versions and records (frozen msgspec Structs), in
ElevenLabs' shapes so one client works against both.

A dictionary belongs to a user and is ``private`` (its owner alone; to anyone else it does not
exist) or ``public`` (usable by every user, changed only by its owner), like a voice. Its rules
never change in place: every change (``add-rules``, ``remove-rules``) makes a new version with
its own id, and old versions stay readable, so a job pinned to a version at submit keeps its
cache key and its audio (``protocols/postgres/dictionaries_sql.py``). Jobs and storybooks name
dictionaries by ``DictionaryRef`` (``protocols/messages.py``); Chorus's own dictionary ids start
with ``pd_``, any other id is the provider's (an ElevenLabs dictionary made elsewhere).

How rules apply is ``protocols/domain/pronunciation.py``; limits are enforced at the edge and
in ``protocols/domain/dictionaries.py`` and listed in the README.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from typing import Annotated, Literal

import msgspec

from protocols.messages import DictionaryRef, Visibility

# --- limits (also in the README) ----------------------------------------------------------------

MAX_RULES = 1000  # rules in one version, and in one add-rules call
MAX_STRING = 200  # characters of a rule's string_to_replace
MAX_REPLACEMENT = 500  # characters of an alias or a phoneme string
MAX_NAME = 100
MAX_DESCRIPTION = 500
MAX_PER_USER = 100  # dictionaries a user has (deleted ones not counted)
MAX_LOCATORS = 3  # dictionaries one job applies (ElevenLabs' limit), also a user's default
MAX_PLS_BYTES = 1024 * 1024  # an add-from-file upload
#: the request body limit of the dictionary routes (web/app.py): 1000 long rules, escaped
MAX_DICTIONARY_BODY = 2 * 1024 * 1024

CHORUS_PREFIX = "pd_"

RuleString = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_STRING)]
Replacement = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_REPLACEMENT)]


def is_chorus_dictionary(dictionary_id: str) -> bool:
    """A Chorus dictionary (``pd_...``), as opposed to a provider's own id passed through."""
    return dictionary_id.startswith(CHORUS_PREFIX)


def new_dictionary_id() -> str:
    """``pd_`` + 12 hex digits of milliseconds + 12 random: unique and time-sortable."""
    return f"{CHORUS_PREFIX}{time.time_ns() // 1_000_000:012x}{secrets.token_hex(6)}"


def new_version_id() -> str:
    return f"pdv_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(6)}"


# --- rules ----------------------------------------------------------------------------------------


class AliasRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True,
                tag="alias", tag_field="type"):
    """Say ``alias`` where the text has ``string_to_replace``."""

    string_to_replace: RuleString
    alias: Replacement
    #: ElevenLabs' defaults: match the exact case, and only whole words
    case_sensitive: bool = True
    word_boundaries: bool = True


class PhonemeRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True,
                  tag="phoneme", tag_field="type"):
    """Say ``string_to_replace`` as ``phoneme`` (IPA or CMU Arpabet)."""

    string_to_replace: RuleString
    phoneme: Replacement
    alphabet: Literal["ipa", "cmu-arpabet"]
    case_sensitive: bool = True
    word_boundaries: bool = True


Rule = AliasRule | PhonemeRule
Rules = Annotated[list[Rule], msgspec.Meta(max_length=MAX_RULES)]


# --- what a client sends -------------------------------------------------------------------------


class FromRulesRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/pronunciation-dictionaries/add-from-rules``."""

    name: str
    rules: Rules
    description: str | None = None
    visibility: Literal["private", "public"] | None = None
    #: ElevenLabs' workspace sharing: accepted for compatibility, not used
    workspace_access: Literal["admin", "editor", "viewer"] | None = None


class AddRulesRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    rules: Rules


class RemoveRulesRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    rule_strings: Annotated[list[RuleString], msgspec.Meta(max_length=MAX_RULES)]


class DefaultsRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``PUT /v1/user/pronunciation-dictionaries``: what a job or book naming none applies."""

    locators: Annotated[list[DictionaryRef], msgspec.Meta(max_length=MAX_LOCATORS)]


# --- records ------------------------------------------------------------------------------------


class NewDictionary(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    owner: str
    name: str
    description: str
    visibility: Visibility
    version_id: str
    rules: tuple[Rule, ...]
    #: where the dictionary is mirrored (``elevenlabs``) and its id and version there
    provider: str | None = None
    provider_dictionary_id: str | None = None
    provider_version_id: str | None = None


class NewVersion(msgspec.Struct, frozen=True, kw_only=True):
    """A change: the dictionary's next version, made only if ``based_on`` is still current."""

    dictionary_id: str
    owner: str
    based_on: str
    version_id: str
    rules: tuple[Rule, ...]
    provider_version_id: str | None = None


class Dictionary(msgspec.Struct, frozen=True, kw_only=True):
    """A dictionary and its current version (``rules`` filled when asked for)."""

    id: str
    owner: str
    name: str
    description: str
    visibility: Visibility
    version_id: str  # the current version
    rules_num: int
    created_at: dt.datetime
    updated_at: dt.datetime
    provider: str | None = None
    provider_dictionary_id: str | None = None
    rules: tuple[Rule, ...] = ()

    def visible_to(self, user_id: str) -> bool:
        return self.visibility is not Visibility.private or self.owner == user_id


class DictionaryVersion(msgspec.Struct, frozen=True, kw_only=True):
    """One version's rules, as a job pinned to it is spoken (versions never change)."""

    dictionary_id: str
    version_id: str
    rules: tuple[Rule, ...]
    created_at: dt.datetime
    provider: str | None = None
    provider_dictionary_id: str | None = None
    provider_version_id: str | None = None

    def remote(self, provider: str) -> DictionaryRef | None:
        """The locator of this version at ``provider``, if it is mirrored there."""
        if self.provider != provider or not self.provider_dictionary_id:
            return None
        return DictionaryRef(pronunciation_dictionary_id=self.provider_dictionary_id,
                             version_id=self.provider_version_id)
