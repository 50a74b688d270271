"""Pronunciation rules as text: cleaning them, changing a rule list, and applying rules to the
text an engine will speak (pure; the embedded engines call ``apply_rules``).

How rules match (documented in the README, "Pronunciation dictionaries"):

- Both the rule's ``string_to_replace`` and the text are NFC-normalized with whitespace collapsed;
  a space in a rule matches any run of whitespace.
- ``case_sensitive`` (default true, like ElevenLabs and PLS): the exact case only; false: any
  case (Unicode case folding as Python's ``re.IGNORECASE`` does it).
- ``word_boundaries`` (default true): the match may not have a letter, digit or ``_`` of any
  script right before or right after it ("Bo" does not match inside "Bob"; a rule ending or
  starting with punctuation, like "Dr.", works too). Two exceptions, so Korean and the scripts
  written without spaces work: after a rule that ends in Hangul, more Hangul may follow (Korean
  particles attach to names: the rule "현우" matches in "현우가"); and next to a rule's character
  from a script written without spaces (Han, kana, Thai, Lao, Khmer, Myanmar) nothing is required.
- One pass, left to right: at each position the longest matching rule wins (then the earlier
  dictionary, then the earlier rule); replaced text is never matched again.
- Alias rules put the alias in place of the match. Phoneme rules go through the engine's
  phoneme input (``render``); an engine without one, or a phoneme it cannot read, leaves the
  text as written (ElevenLabs itself skips phoneme rules on models without phoneme support).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import msgspec

from protocols.dictionaries import MAX_RULES, AliasRule, PhonemeRule, Rule
from protocols.domain.text import normalize_text
from protocols.errors import InvalidRules

#: how an engine says a phoneme rule: its own markup for the phonemes, or None (rule skipped)
Render = Callable[[PhonemeRule], str | None]

_HANGUL = "\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f"
_UNSPACED = (
    "\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff\U00020000-\U0002ffff"  # Han
    "\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f"  # kana
    "\u0e00-\u0eff\u1780-\u17ff\u1000-\u109f"  # Thai, Lao, Khmer, Myanmar
)
_IS_HANGUL = re.compile(f"[{_HANGUL}]")
_IS_UNSPACED = re.compile(f"[{_UNSPACED}]")


class Pronounced(NamedTuple):
    text: str
    #: some phoneme markup was put in (the engine must read its phoneme input)
    phonemes: bool


# --- cleaning and changing rule lists ------------------------------------------------------------


def _one_line(text: str) -> str:
    """NFC like the text, every run of whitespace (line breaks too) one space."""
    return " ".join(normalize_text(text).split())


def clean_rule(rule: Rule, where: str = "rules") -> Rule:
    """The rule with its strings normalized as the text will be; ``InvalidRules`` if one is
    left empty."""
    key = _one_line(rule.string_to_replace)
    if not key:
        raise InvalidRules(f"{where}.string_to_replace is empty.", field=where)
    if isinstance(rule, AliasRule):
        alias = _one_line(rule.alias)
        if not alias:
            raise InvalidRules(f"{where}.alias is empty.", field=where)
        return msgspec.structs.replace(rule, string_to_replace=key, alias=alias)
    phoneme = " ".join(rule.phoneme.split())
    if not phoneme:
        raise InvalidRules(f"{where}.phoneme is empty.", field=where)
    return msgspec.structs.replace(rule, string_to_replace=key, phoneme=phoneme)


def clean_rules(rules: Iterable[Rule]) -> tuple[Rule, ...]:
    """Each rule cleaned; of rules with the same ``string_to_replace`` the last one stays."""
    return add_rules((), rules)


def add_rules(current: Sequence[Rule], new: Iterable[Rule]) -> tuple[Rule, ...]:
    """``current`` with ``new`` added: a rule for a string already there replaces it (as
    ElevenLabs' add-rules does). ``InvalidRules`` past ``MAX_RULES``."""
    out: dict[str, Rule] = {rule.string_to_replace: rule for rule in current}
    for i, rule in enumerate(new):
        cleaned = clean_rule(rule, f"rules[{i}]")
        out.pop(cleaned.string_to_replace, None)  # the newest goes last
        out[cleaned.string_to_replace] = cleaned
    if len(out) > MAX_RULES:
        raise InvalidRules(
            f"A dictionary holds at most {MAX_RULES} rules; this would make {len(out)}.",
            limit=MAX_RULES,
        )
    return tuple(out.values())


def remove_rules(current: Sequence[Rule], strings: Iterable[str]) -> tuple[Rule, ...]:
    """``current`` without the rules for ``strings`` (strings it has no rule for are ignored)."""
    gone = {_one_line(s) for s in strings}
    return tuple(rule for rule in current if rule.string_to_replace not in gone)


# --- applying ------------------------------------------------------------------------------------


def _pattern(rule: Rule) -> str:
    key = rule.string_to_replace
    body = r"\s+".join(re.escape(part) for part in key.split(" "))
    if rule.word_boundaries:
        first, last = key[0], key[-1]
        lead = "" if _IS_UNSPACED.match(first) else r"(?<!\w)"
        trail = "" if _IS_UNSPACED.match(last) or _IS_HANGUL.match(last) else r"(?!\w)"
        body = f"{lead}{body}{trail}"
    return body if rule.case_sensitive else f"(?i:{body})"


class _Compiled(NamedTuple):
    regex: re.Pattern[str] | None
    #: by group name: (replacement, is phoneme markup)
    replacements: dict[str, tuple[str, bool]]


@functools.lru_cache(maxsize=64)
def _compile(rules: tuple[Rule, ...], render: Render | None) -> _Compiled:
    chosen: list[tuple[int, int, str, str, bool]] = []
    for order, rule in enumerate(rules):
        if isinstance(rule, AliasRule):
            replacement, markup = rule.alias, False
        else:
            said = render(rule) if render is not None else None
            if said is None:
                continue
            replacement, markup = said, True
        chosen.append((-len(rule.string_to_replace), order, _pattern(rule), replacement, markup))
    if not chosen:
        return _Compiled(None, {})
    chosen.sort(key=lambda c: (c[0], c[1]))  # longest first, then dictionary and rule order
    parts, replacements = [], {}
    for i, (_, _, pattern, replacement, markup) in enumerate(chosen):
        parts.append(f"(?P<r{i}>{pattern})")
        replacements[f"r{i}"] = (replacement, markup)
    return _Compiled(re.compile("|".join(parts)), replacements)


def apply_rules(
    text: str,
    rules: Sequence[Rule],
    *,
    render: Render | None = None,
    escape: Callable[[str], str] | None = None,
) -> Pronounced:
    """``text`` with ``rules`` applied (see the module docstring). ``render``: the engine's
    phoneme markup for a phoneme rule; ``escape``: applied to the rest of the text when markup
    was put in (so the user's own text is never read as phoneme input)."""
    compiled = _compile(tuple(rules), render)
    if compiled.regex is None:
        return Pronounced(text, False)
    pieces: list[tuple[str, bool]] = []
    at = 0
    for match in compiled.regex.finditer(text):
        replacement, markup = compiled.replacements[match.lastgroup or ""]
        pieces.append((text[at:match.start()], False))
        pieces.append((replacement, markup))
        at = match.end()
    pieces.append((text[at:], False))
    phonemes = any(markup for _, markup in pieces)
    if phonemes and escape is not None:
        return Pronounced("".join(p if m else escape(p) for p, m in pieces), True)
    return Pronounced("".join(p for p, _ in pieces), phonemes)
