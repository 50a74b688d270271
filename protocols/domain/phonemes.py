"""Phoneme strings of pronunciation rules (IPA or CMU Arpabet) as espeak-ng phoneme mnemonics,
for its ``[[...]]`` phoneme input, or as the IPA Piper reads in its own ``[[...]]`` (pure).

What is supported (also in the README): the phonemes of English, in the mnemonics of espeak-ng's
English voices: IPA vowels, diphthongs, r-coloured vowels and consonants of General American and
RP, the stress marks ``ˈ`` ``ˌ``, length ``ː``, syllable dots and tie bars; CMU Arpabet's 39
phonemes with stress digits 0/1/2. A string with any other symbol is not converted (None): the
rule then leaves its word as written, as ElevenLabs does for phoneme rules its model cannot
read. espeak-ng puts a stress mark right before the stressed vowel (IPA puts it before the
syllable), so marks are moved there; Piper's voices were trained on espeak-ng's IPA, which
does the same, so ``to_piper_ipa`` moves them too.
"""

from __future__ import annotations

#: IPA -> (espeak mnemonic, is a vowel). Longest symbols are tried first.
_IPA: dict[str, tuple[str, bool]] = {
    # diphthongs and r-coloured / long vowels
    "eɪ": ("eI", True), "aɪ": ("aI", True), "ɔɪ": ("OI", True), "aʊ": ("aU", True),
    "oʊ": ("oU", True), "əʊ": ("oU", True), "ɪə": ("i@", True), "ɪɚ": ("i@", True),
    "ɛə": ("e@", True), "eə": ("e@", True), "ɛɚ": ("e@", True), "ʊə": ("U@", True),
    "ʊɚ": ("U@", True), "ɑɹ": ("A@", True), "ɑː": ("A:", True), "aː": ("A:", True),
    "ɔː": ("O:", True), "iː": ("i:", True), "uː": ("u:", True), "ɜː": ("3:", True),
    "oː": ("oU", True),
    # single vowels
    "i": ("i:", True), "ɪ": ("I", True), "ᵻ": ("I", True), "e": ("E", True), "ɛ": ("E", True),
    "æ": ("a", True), "a": ("a", True), "ɑ": ("A:", True), "ɒ": ("0", True),
    "ɔ": ("O:", True), "o": ("oU", True), "ʊ": ("U", True), "u": ("u:", True),
    "ʌ": ("V", True), "ə": ("@", True), "ɐ": ("@", True), "ɚ": ("3", True),
    "ɝ": ("3:", True), "ɜ": ("3:", True), "l̩": ("@L", True), "n̩": ("@n", True),
    "m̩": ("@m", True),
    # consonants
    "t͡ʃ": ("tS", False), "tʃ": ("tS", False), "d͡ʒ": ("dZ", False), "dʒ": ("dZ", False),
    "p": ("p", False), "b": ("b", False), "t": ("t", False), "d": ("d", False),
    "k": ("k", False), "g": ("g", False), "ɡ": ("g", False), "f": ("f", False),
    "v": ("v", False), "θ": ("T", False), "ð": ("D", False), "s": ("s", False),
    "z": ("z", False), "ʃ": ("S", False), "ʒ": ("Z", False), "h": ("h", False),
    "m": ("m", False), "n": ("n", False), "ŋ": ("N", False), "l": ("l", False),
    "ɫ": ("l", False), "ɹ": ("r", False), "r": ("r", False), "ɾ": ("t", False),
    "w": ("w", False), "ʍ": ("w", False), "j": ("j", False), "ʔ": ("?", False),
    "x": ("x", False),
}
_IPA_LONGEST = max(len(k) for k in _IPA)
_STRESS = {"ˈ": "'", "'": "'", "ˌ": ",", ",": ","}
_SKIPPED = {".", "ː", "ˑ", "‿", "\u0361"}

#: CMU Arpabet (no stress digit) -> (espeak mnemonic, is a vowel)
_CMU: dict[str, tuple[str, bool]] = {
    "AA": ("A:", True), "AE": ("a", True), "AH": ("V", True), "AO": ("O:", True),
    "AW": ("aU", True), "AY": ("aI", True), "EH": ("E", True), "ER": ("3:", True),
    "EY": ("eI", True), "IH": ("I", True), "IY": ("i:", True), "OW": ("oU", True),
    "OY": ("OI", True), "UH": ("U", True), "UW": ("u:", True),
    "B": ("b", False), "CH": ("tS", False), "D": ("d", False), "DH": ("D", False),
    "F": ("f", False), "G": ("g", False), "HH": ("h", False), "JH": ("dZ", False),
    "K": ("k", False), "L": ("l", False), "M": ("m", False), "N": ("n", False),
    "NG": ("N", False), "P": ("p", False), "R": ("r", False), "S": ("s", False),
    "SH": ("S", False), "T": ("t", False), "TH": ("T", False), "V": ("v", False),
    "W": ("w", False), "Y": ("j", False), "Z": ("z", False), "ZH": ("Z", False),
}
#: unstressed AH and ER are the reduced vowels
_CMU_UNSTRESSED = {"AH": "@", "ER": "3"}


def ipa_to_espeak(ipa: str) -> str | None:
    """The espeak-ng mnemonics for an English IPA string (``təˈmɑːtoʊ`` -> ``t@m'A:toU``),
    or None if it holds a symbol outside the supported set."""
    out: list[str] = []
    stress = ""
    i = 0
    text = ipa.strip().strip("/[]").strip()
    while i < len(text):
        char = text[i]
        if char.isspace():
            if stress:  # a stress mark with no vowel after it in its word
                return None
            if out and out[-1] != " ":
                out.append(" ")
            i += 1
            continue
        if char in _STRESS:
            stress = _STRESS[char]
            i += 1
            continue
        for size in range(min(_IPA_LONGEST, len(text) - i), 0, -1):
            found = _IPA.get(text[i:i + size])
            if found is not None:
                mnemonic, vowel = found
                if vowel and stress:
                    out.append(stress)
                    stress = ""
                out.append(mnemonic)
                i += size
                break
        else:
            if char in _SKIPPED:
                i += 1
                continue
            return None
    if stress:
        return None
    result = "".join(out).strip()
    return result or None


def cmu_to_espeak(cmu: str) -> str | None:
    """The espeak-ng mnemonics for CMU Arpabet (``T AH0 M EY1 T OW2`` -> ``t@m'eItoU``), or
    None if a token is not one of its phonemes."""
    out: list[str] = []
    for token in cmu.upper().split():
        base, digit = (token[:-1], token[-1]) if token[-1:].isdigit() else (token, "")
        found = _CMU.get(base)
        if found is None or (digit and (not found[1] or digit not in "012")):
            return None
        mnemonic, vowel = found
        if vowel and digit == "0":
            mnemonic = _CMU_UNSTRESSED.get(base, mnemonic)
        if vowel and digit in ("1", "2"):
            out.append("'" if digit == "1" else ",")
        out.append(mnemonic)
    return "".join(out) or None


def to_espeak(phoneme: str, alphabet: str) -> str | None:
    """A rule's phonemes in espeak-ng mnemonics, by its alphabet; None if not convertible."""
    if alphabet == "ipa":
        return ipa_to_espeak(phoneme)
    if alphabet == "cmu-arpabet":
        return cmu_to_espeak(phoneme)
    return None


#: CMU Arpabet -> IPA (unstressed AH and ER are the reduced vowels)
_CMU_IPA: dict[str, str] = {
    "AA": "ɑː", "AE": "æ", "AH": "ʌ", "AO": "ɔː", "AW": "aʊ", "AY": "aɪ", "EH": "ɛ",
    "ER": "ɜː", "EY": "eɪ", "IH": "ɪ", "IY": "iː", "OW": "oʊ", "OY": "ɔɪ", "UH": "ʊ",
    "UW": "uː", "B": "b", "CH": "tʃ", "D": "d", "DH": "ð", "F": "f", "G": "ɡ", "HH": "h",
    "JH": "dʒ", "K": "k", "L": "l", "M": "m", "N": "n", "NG": "ŋ", "P": "p", "R": "ɹ",
    "S": "s", "SH": "ʃ", "T": "t", "TH": "θ", "V": "v", "W": "w", "Y": "j", "Z": "z",
    "ZH": "ʒ",
}
_CMU_IPA_UNSTRESSED = {"AH": "ə", "ER": "ɚ"}
_IPA_VOWELS = frozenset("aeiouyæɑɒɔəɚɛɜɝɪʊʌɐᵻøœɯɤɨʉ")


def to_piper_ipa(phoneme: str, alphabet: str) -> str | None:
    """A rule's phonemes as the IPA Piper reads (stress marks right before their vowel), or
    None if it is not IPA or convertible CMU Arpabet."""
    if alphabet == "cmu-arpabet":
        out: list[str] = []
        for token in phoneme.upper().split():
            base, digit = (token[:-1], token[-1]) if token[-1:].isdigit() else (token, "")
            ipa = _CMU_IPA.get(base)
            vowel = base in _CMU and _CMU[base][1]
            if ipa is None or (digit and (not vowel or digit not in "012")):
                return None
            if digit == "0":
                ipa = _CMU_IPA_UNSTRESSED.get(base, ipa)
            out.append(("ˈ" if digit == "1" else "ˌ" if digit == "2" else "") + ipa)
        return "".join(out) or None
    if alphabet != "ipa":
        return None
    text, stress, moved = phoneme.strip().strip("/[]").strip(), "", []
    for char in text:
        if char in "ˈˌ":
            stress = char
            continue
        if stress and char in _IPA_VOWELS:
            moved.append(stress)
            stress = ""
        moved.append(char)
    return "".join(moved).strip() or None
