"""Pronunciation dictionaries on the embedded engines: on espeak-ng aliases change the words it
says, phoneme rules go through its phoneme input (not read out as text), Korean works; Piper
says aliases and IPA / CMU phonemes; the embedded provider gives every engine the lexicon; a job
that names a dictionary that is not Chorus's is refused at submit."""

from __future__ import annotations

import datetime as dt

import pytest

from protocols.dictionaries import AliasRule, DictionaryVersion, PhonemeRule, Rule
from protocols.domain.phonemes import ipa_to_espeak
from protocols.errors import DictionaryNotFound, InvalidInput
from protocols.messages import DictionaryRef, SpeechParams, SynthesisRequest
from protocols.ports import SpeechProvider
from protocols.providers.embedded import EmbeddedProvider
from protocols.providers.espeak import EspeakProvider
from protocols.providers.piper import JOE, PiperProvider, installed

REF = DictionaryRef(pronunciation_dictionary_id="pd_names", version_id="pdv_1")
LONG_WORD = "ˈsuːpɚˌkæləˌfɹædʒəˌlɪstɪk"


class Lexicon:
    """The versions a provider may read (what the DictionaryCatalog is to it)."""

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        self.rules = rules

    async def version(self, ref: DictionaryRef) -> DictionaryVersion:
        if ref != REF:
            raise DictionaryNotFound(f"no {ref}")
        return DictionaryVersion(dictionary_id=ref.pronunciation_dictionary_id,
                                 version_id="pdv_1", rules=self.rules, created_at=dt.datetime.now())


async def seconds(
    text: str, *rules: Rule, voice: str = "en-us", provider: SpeechProvider | None = None
) -> float:
    provider = provider or EspeakProvider()
    provider.use_lexicon(Lexicon(rules))
    params = SpeechParams(dictionaries=(REF,) if rules else ())
    result = await provider.synthesize(SynthesisRequest(
        text=text, voice_id=voice, output_format="pcm_22050", params=params,
    ))
    return result.duration_s


async def test_an_alias_changes_what_is_said():
    plain = await seconds("Hyeon-woo went home.")
    alias = AliasRule(string_to_replace="Hyeon-woo",
                      alias="Hyun woo, the brave little fox of the northern hills,")
    assert await seconds("Hyeon-woo went home.", alias) > plain + 1.0
    assert abs(await seconds("Nobody went home.", alias)
               - await seconds("Nobody went home.")) < 0.05  # no match: unchanged


async def test_a_phoneme_rule_is_spoken_through_the_phoneme_input():
    plain = await seconds("Nyx went home.")
    rule = PhonemeRule(string_to_replace="Nyx", phoneme=LONG_WORD, alphabet="ipa")
    spoken = await seconds("Nyx went home.", rule)
    # the markup read as text (what the user's own brackets get) would take far longer
    literal = await seconds("Nyx went home.", AliasRule(
        string_to_replace="Nyx", alias=f"[[{ipa_to_espeak(LONG_WORD)}]]"))
    assert plain + 0.4 < spoken < literal - 1.0


async def test_an_alias_in_korean_applies_before_a_particle():
    plain = await seconds("현우가 웃었다.", voice="ko")
    rule = AliasRule(string_to_replace="현우", alias="현우 형님과 작은 여우 친구들")
    assert await seconds("현우가 웃었다.", rule, voice="ko") > plain + 0.8


async def test_a_version_that_is_gone_fails_the_job():
    provider = EspeakProvider()
    provider.use_lexicon(Lexicon(()))
    missing = DictionaryRef(pronunciation_dictionary_id="pd_gone", version_id="pdv_9")
    with pytest.raises(DictionaryNotFound):
        await provider.synthesize(SynthesisRequest(
            text="Hello.", voice_id="en-us", params=SpeechParams(dictionaries=(missing,))))


async def test_only_pinned_chorus_dictionaries_are_accepted_at_submit():
    provider = EspeakProvider()
    voice = await provider.resolve_voice("en-us", None)
    pinned = await provider.prepare("Hi.", voice, "en", SpeechParams(dictionaries=(REF,)))
    assert pinned.dictionaries == (REF,) and pinned.model_id == "espeak-ng"
    for ref in (DictionaryRef(pronunciation_dictionary_id="elevenlabs-id", version_id="v"),
                DictionaryRef(pronunciation_dictionary_id="pd_names")):
        with pytest.raises(InvalidInput):
            await provider.prepare("Hi.", voice, "en", SpeechParams(dictionaries=(ref,)))


@pytest.mark.skipif(not installed(), reason="Piper is not installed")
async def test_piper_says_aliases_and_phonemes():
    piper = PiperProvider()
    voice = JOE.voice_id
    plain = await seconds("Nyx went home.", voice=voice, provider=piper)
    spelled = await seconds("Nyx went home.", AliasRule(
        string_to_replace="Nyx", alias="supercalifragilistic"), voice=voice, provider=piper)
    for rule in (PhonemeRule(string_to_replace="Nyx", phoneme=LONG_WORD, alphabet="ipa"),
                 PhonemeRule(string_to_replace="Nyx", alphabet="cmu-arpabet",
                             phoneme="S UW1 P ER0 K AE2 L AH0 F R AE2 JH AH0 L IH1 S T IH0 K")):
        spoken = await seconds("Nyx went home.", rule, voice=voice, provider=piper)
        assert spoken > plain + 0.6 and abs(spoken - spelled) < 0.4  # the word, as phonemes


async def test_the_embedded_provider_gives_every_engine_the_lexicon():
    engines = [PiperProvider(), EspeakProvider()] if installed() else [EspeakProvider()]
    rule = AliasRule(string_to_replace="현우", alias="현우 형님과 작은 여우 친구들")
    plain = await seconds("현우가 웃었다.", voice="ko", provider=EmbeddedProvider(engines))
    said = await seconds("현우가 웃었다.", rule, voice="ko", provider=EmbeddedProvider(engines))
    assert said > plain + 0.8
