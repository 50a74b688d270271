"""Pronunciation rules applied to text (protocols/domain/pronunciation.py), their conversion to
espeak-ng phonemes (protocols/domain/phonemes.py) and PLS lexicons (protocols/domain/pls.py)."""

from __future__ import annotations

import pytest

from protocols.dictionaries import MAX_PLS_BYTES, MAX_RULES, AliasRule, PhonemeRule
from protocols.domain.phonemes import cmu_to_espeak, ipa_to_espeak, to_espeak, to_piper_ipa
from protocols.domain.pls import parse_pls, to_pls
from protocols.domain.pronunciation import (
    add_rules,
    apply_rules,
    clean_rules,
    remove_rules,
)
from protocols.errors import InvalidPLS, InvalidRules


def alias(key: str, said: str, **flags: bool) -> AliasRule:
    return AliasRule(string_to_replace=key, alias=said, **flags)


def phoneme(key: str, said: str, alphabet: str = "ipa") -> PhonemeRule:
    return PhonemeRule(string_to_replace=key, phoneme=said, alphabet=alphabet)  # type: ignore[arg-type]


def said(text: str, *rules: AliasRule | PhonemeRule, **kw: object) -> str:
    return apply_rules(text, clean_rules(rules), **kw).text  # type: ignore[arg-type]


# --- matching ------------------------------------------------------------------------------------


def test_an_alias_replaces_whole_words_only():
    rule = alias("Bo", "Beau")
    assert said("Bo met Bob. Bo's hat, (Bo)", rule) == "Beau met Bob. Beau's hat, (Beau)"
    assert said("Bobo and Bo_x", rule) == "Bobo and Bo_x"


def test_word_boundaries_off_matches_inside_words():
    assert said("Chorus, Choruses", alias("Chorus", "Kohrus", word_boundaries=False)) == (
        "Kohrus, Kohruses"
    )


def test_case_sensitive_by_default_and_any_case_when_asked():
    assert said("hyeon-woo and Hyeon-woo", alias("Hyeon-woo", "Hyun woo")) == (
        "hyeon-woo and Hyun woo"
    )
    loose = alias("Hyeon-woo", "Hyun woo", case_sensitive=False)
    assert said("HYEON-WOO and hyeon-woo", loose) == "Hyun woo and Hyun woo"


def test_rules_that_start_or_end_with_punctuation_still_respect_words():
    assert said("Ask Dr. Kim, not Dr.Kim's twin", alias("Dr.", "Doctor")) == (
        "Ask Doctor Kim, not Dr.Kim's twin"
    )
    assert said("use .NET now, not x.NET", alias(".NET", "dot net")) == (
        "use dot net now, not x.NET"
    )


def test_korean_names_match_before_particles_but_not_inside_other_words():
    rule = alias("현우", "혀누")
    assert said("현우가 웃었다. 현우는 여우다.", rule) == "혀누가 웃었다. 혀누는 여우다."
    assert said("박현우가 왔다", rule) == "박현우가 왔다"  # not the start of a word


def test_scripts_without_spaces_match_anywhere():
    assert said("私は東京に行きます", alias("東京", "とうきょう")) == "私はとうきょうに行きます"


def test_the_longest_rule_wins_and_replacements_are_not_matched_again():
    rules = (alias("Hyeon-woo", "Hyun woo"), alias("Hyeon-woo Kim", "Kim Hyun-woo"),
             alias("Hyun", "HYOON"))
    assert said("Hyeon-woo Kim met Hyeon-woo and Hyun.", *rules) == (
        "Kim Hyun-woo met Hyun woo and HYOON."
    )


def test_the_earlier_dictionary_wins_for_the_same_string():
    first = clean_rules([alias("Nyx", "Nix")])
    second = clean_rules([alias("Nyx", "Nooks")])
    assert apply_rules("Nyx", (*first, *second)).text == "Nix"


def test_a_space_in_a_rule_matches_a_line_break():
    assert said("Dear Kim\nHyeon-woo,", alias("Kim Hyeon-woo", "Kim Hyun woo")) == (
        "Dear Kim Hyun woo,"
    )


def test_phoneme_rules_need_the_engines_input_and_escape_the_users_text():
    rules = (phoneme("tomato", "təˈmɑːtoʊ"), alias("Nyx", "Nix"))
    plain = apply_rules("A tomato for Nyx [[x]]", clean_rules(rules))
    assert plain == ("A tomato for Nix [[x]]", False)  # no phoneme input: left as written
    marked = apply_rules(
        "A tomato for Nyx [[x]]", clean_rules(rules),
        render=lambda r: f"[[{ipa_to_espeak(r.phoneme)}]]",
        escape=lambda text: text.replace("[[", "[ ["),
    )
    assert marked == ("A [[t@m'A:toU]] for Nix [ [x]]", True)


# --- rule lists ---------------------------------------------------------------------------------


def test_adding_a_rule_for_a_string_replaces_it_and_removing_drops_it():
    current = clean_rules([alias("A", "ay"), alias("B", "bee")])
    changed = add_rules(current, [alias("A", "eh"), alias("C", "see")])
    assert [(r.string_to_replace, r.alias) for r in changed] == [  # type: ignore[union-attr]
        ("B", "bee"), ("A", "eh"), ("C", "see")
    ]
    assert [r.string_to_replace for r in remove_rules(changed, ["B", "missing"])] == ["A", "C"]


def test_rule_strings_are_normalized_like_the_text_and_never_empty():
    (rule,) = clean_rules([alias("  Kim \n Hyeon-woo ", " Kim  Hyun woo ")])
    assert (rule.string_to_replace, rule.alias) == ("Kim Hyeon-woo", "Kim Hyun woo")
    with pytest.raises(InvalidRules):
        clean_rules([alias(" \u00a0 ", "x")])
    with pytest.raises(InvalidRules):
        add_rules([], [alias(f"w{i}", "x") for i in range(MAX_RULES + 1)])


# --- phonemes for espeak-ng ----------------------------------------------------------------------


def test_ipa_becomes_espeak_mnemonics_with_stress_before_the_vowel():
    assert ipa_to_espeak("təˈmɑːtoʊ") == "t@m'A:toU"
    assert ipa_to_espeak("/ˈhjʌn ˌwuː/") == "hj'Vn w,u:"
    assert ipa_to_espeak("ˈθɪŋ.kɪŋ") == "T'INkIN"
    assert ipa_to_espeak("ʁ") is None  # not an English phoneme: not converted
    assert ipa_to_espeak("ˈ") is None


def test_cmu_arpabet_becomes_espeak_mnemonics():
    assert cmu_to_espeak("T AH0 M EY1 T OW2") == "t@m'eIt,oU"
    assert cmu_to_espeak("hh ah1 n") == "h'Vn"
    assert cmu_to_espeak("T XX1") is None
    assert cmu_to_espeak("T1") is None  # a consonant has no stress
    assert to_espeak("kɪm", "ipa") == "kIm" and to_espeak("K IH1 M", "cmu-arpabet") == "k'Im"


def test_phonemes_for_piper_are_ipa_with_stress_before_the_vowel():
    assert to_piper_ipa("/təˈmɑːtoʊ/", "ipa") == "təmˈɑːtoʊ"
    assert to_piper_ipa("T AH0 M EY1 T OW2", "cmu-arpabet") == "təmˈeɪtˌoʊ"
    assert to_piper_ipa("T XX1", "cmu-arpabet") is None


# --- PLS -----------------------------------------------------------------------------------------

PLS = """<?xml version="1.0" encoding="UTF-8"?>
<lexicon version="1.0" xmlns="http://www.w3.org/2005/01/pronunciation-lexicon"
         alphabet="ipa" xml:lang="en-US">
  <lexeme><grapheme>tomato</grapheme><grapheme>Tomato</grapheme>
    <phoneme>təˈmɑːtoʊ</phoneme></lexeme>
  <lexeme><grapheme>Hyeon-woo</grapheme><alias>Hyun woo</alias></lexeme>
  <lexeme><grapheme>Kim</grapheme><phoneme alphabet="x-cmu">K IH1 M</phoneme></lexeme>
</lexicon>
"""


def test_a_pls_lexicon_gives_one_rule_per_grapheme():
    rules = parse_pls(PLS.encode())
    assert rules == [
        phoneme("tomato", "təˈmɑːtoʊ"), phoneme("Tomato", "təˈmɑːtoʊ"),
        alias("Hyeon-woo", "Hyun woo"), phoneme("Kim", "K IH1 M", "cmu-arpabet"),
    ]
    assert parse_pls(to_pls(rules).encode()) == rules  # what download gives reads back


@pytest.mark.parametrize(("data", "says"), [
    (b"", "empty"),
    (b"<lexicon><lexeme>", "not well-formed"),
    (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;">]>'
     b"<lexicon>&b;</lexicon>", "DTDs and entities"),
    (b'<!DOCTYPE l SYSTEM "file:///etc/passwd"><lexicon/>', "DTDs and entities"),
    (b"<speak/>", "root element is <speak>"),
    (b"<lexicon><lexeme><alias>x</alias></lexeme></lexicon>", "lexeme 1 has no <grapheme>"),
    (b"<lexicon><lexeme><grapheme>x</grapheme></lexeme></lexicon>", "neither an <alias>"),
    (b'<lexicon alphabet="sampa"><lexeme><grapheme>x</grapheme><phoneme>x</phoneme>'
     b"</lexeme></lexicon>", "alphabet 'sampa'"),
    (b"<lexicon><lexeme><grapheme>" + b"x" * 201 + b"</grapheme><alias>y</alias></lexeme>"
     b"</lexicon>", "lexeme 1"),
    (b" " * (MAX_PLS_BYTES + 1), "at most"),
])
def test_a_bad_pls_file_is_refused_saying_why(data, says):
    with pytest.raises(InvalidPLS) as caught:
        parse_pls(data)
    assert says in caught.value.detail
