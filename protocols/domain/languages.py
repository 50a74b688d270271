"""Which languages a deployment admits (``CHORUS_SUPPORTED_LANGUAGES``): a job or a storybook
asking for another is refused at submit with ``422 unsupported_language``, before any voice or
model is looked at. Pure: no I/O.

A tag matches when it is in the list as it is (``pt-br``) or by its primary subtag (``en``
admits ``en-US`` and ``en-GB``); case and ``_`` / ``-`` do not matter. An empty list admits
every language, and a request without a language is never refused here (the voice's or the
engine's default applies).
"""

from __future__ import annotations

from collections.abc import Sequence

from protocols.errors import UnsupportedLanguage


def normalize(tag: str) -> str:
    """``" ko_KR "`` -> ``"ko-kr"``."""
    return tag.strip().replace("_", "-").lower()


def is_supported(language: str | None, supported: Sequence[str]) -> bool:
    if not supported or language is None or not language.strip():
        return True
    tag, allowed = normalize(language), {normalize(t) for t in supported}
    return tag in allowed or tag.split("-", 1)[0] in allowed


def check_language(language: str | None, supported: Sequence[str]) -> None:
    """Raises ``UnsupportedLanguage`` (422) for a language outside ``supported``."""
    if not is_supported(language, supported):
        raise UnsupportedLanguage(
            f"language {language!r} is not supported here; supported: {', '.join(supported)}.",
            language=language, supported=list(supported),
        )
