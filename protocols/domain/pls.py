"""PLS lexicons (W3C Pronunciation Lexicon Specification 1.0), read and written (pure).

Reading is for ``add-from-file`` uploads, so it is defensive: at most ``MAX_PLS_BYTES``, parsed
with ``defusedxml`` (no DTDs, no entities, no external references: no entity-expansion bombs and
no file or network reads), at most ``MAX_RULES`` rules. Each ``<lexeme>`` gives one rule per
``<grapheme>``: an ``<alias>`` makes alias rules, else its first ``<phoneme>`` makes phoneme
rules (alphabet from the phoneme, else the lexicon: ``ipa`` or ``cmu-arpabet``; ``x-cmu`` and
``cmu`` are read as ``cmu-arpabet``). PLS graphemes are case-sensitive, and match whole words:
the rules' defaults. Every problem is an ``InvalidPLS`` naming the lexeme (1-based).
"""

from __future__ import annotations

from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

import defusedxml
import defusedxml.ElementTree as SafeET
import msgspec

from protocols.dictionaries import MAX_PLS_BYTES, MAX_RULES, AliasRule, PhonemeRule, Rule
from protocols.errors import InvalidPLS

NAMESPACE = "http://www.w3.org/2005/01/pronunciation-lexicon"
_ALPHABETS = {"ipa": "ipa", "cmu-arpabet": "cmu-arpabet", "x-cmu": "cmu-arpabet",
              "cmu": "cmu-arpabet", "x-cmu-arpabet": "cmu-arpabet"}


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _text(element: ET.Element) -> str:
    return " ".join("".join(element.itertext()).split())


def parse_pls(data: bytes) -> list[Rule]:
    """The rules of a PLS lexicon. Raises ``InvalidPLS`` with what is wrong and where."""
    if len(data) > MAX_PLS_BYTES:
        raise InvalidPLS(f"The file has {len(data)} bytes; at most {MAX_PLS_BYTES}.",
                         limit=MAX_PLS_BYTES)
    if not data.strip():
        raise InvalidPLS("The file is empty.")
    try:
        root = SafeET.fromstring(data, forbid_dtd=True)
    except defusedxml.DefusedXmlException as exc:
        raise InvalidPLS(
            f"The file is not accepted: {type(exc).__name__} (DTDs and entities are not allowed)."
        ) from exc
    except ET.ParseError as exc:
        raise InvalidPLS(f"The file is not well-formed XML: {exc}.") from exc
    if _local(root.tag) != "lexicon":
        raise InvalidPLS(f"The root element is <{_local(root.tag)}>; a PLS file has <lexicon>.")
    default = _alphabet(root.get("alphabet") or "ipa", "the lexicon")
    rules: list[Rule] = []
    for n, lexeme in enumerate((e for e in root if _local(e.tag) == "lexeme"), start=1):
        where = f"lexeme {n}"
        graphemes = [_text(e) for e in lexeme if _local(e.tag) == "grapheme"]
        graphemes = [g for g in graphemes if g]
        if not graphemes:
            raise InvalidPLS(f"{where} has no <grapheme>.", lexeme=n)
        aliases = [e for e in lexeme if _local(e.tag) == "alias"]
        phonemes = [e for e in lexeme if _local(e.tag) == "phoneme"]
        try:
            if aliases and _text(aliases[0]):
                alias = _text(aliases[0])
                made: list[Rule] = [
                    AliasRule(string_to_replace=g, alias=alias) for g in graphemes
                ]
            elif phonemes and _text(phonemes[0]):
                alphabet = _alphabet(phonemes[0].get("alphabet") or default, where)
                said = _text(phonemes[0])
                made = [
                    PhonemeRule(string_to_replace=g, phoneme=said, alphabet=alphabet)  # type: ignore[arg-type]
                    for g in graphemes
                ]
            else:
                raise InvalidPLS(f"{where} has neither an <alias> nor a <phoneme>.", lexeme=n)
            rules.extend(msgspec.convert(msgspec.to_builtins(r), Rule) for r in made)
        except msgspec.ValidationError as exc:  # lengths: the same limits as JSON rules
            raise InvalidPLS(f"{where}: {exc}", lexeme=n) from exc
        if len(rules) > MAX_RULES:
            raise InvalidPLS(f"The file has more than {MAX_RULES} rules.", limit=MAX_RULES)
    return rules


def _alphabet(value: str, where: str) -> str:
    found = _ALPHABETS.get(value.strip().lower())
    if found is None:
        raise InvalidPLS(f"{where}: alphabet {value!r} is not supported (ipa, cmu-arpabet).")
    return found


def to_pls(rules: list[Rule] | tuple[Rule, ...], lang: str = "en-US") -> str:
    """A PLS lexicon of ``rules`` (case and word-boundary options have no PLS form)."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<lexicon version="1.0" xmlns="{NAMESPACE}" alphabet="ipa" xml:lang={quoteattr(lang)}>',
    ]
    for rule in rules:
        grapheme = f"<grapheme>{escape(rule.string_to_replace)}</grapheme>"
        if isinstance(rule, AliasRule):
            said = f"<alias>{escape(rule.alias)}</alias>"
        else:
            attr = "" if rule.alphabet == "ipa" else f" alphabet={quoteattr(rule.alphabet)}"
            said = f"<phoneme{attr}>{escape(rule.phoneme)}</phoneme>"
        lines.append(f"  <lexeme>{grapheme}{said}</lexeme>")
    lines.append("</lexicon>")
    return "\n".join(lines) + "\n"
