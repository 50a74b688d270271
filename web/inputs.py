"""What a client sends, checked in one place before anything reaches the store or the provider.

- ``json_object``: a request body as a JSON object. Bytes that are not UTF-8 are malformed JSON
  (RFC 8259 §8.1), nesting is bounded *before* decoding (msgspec recurses), and a string holding
  U+0000 is refused naming its field: Postgres cannot store it (SQLSTATE 22021).
- ``reject_nul``: the same refusal for values that come another way (form fields, headers,
  query parameters).
- ``encode_cursor`` / ``decode_cursor``: the opaque cursors of paginated lists.
- ``decode_as``: such an object as the request's msgspec Struct (the one ``/openapi.json``
  shows): unknown fields refused all at once if the Struct forbids them, and a
  ``ValidationError`` as ``InvalidInput`` naming its field (``field_of``), as ``reject_nul``
  spells it.
- ``stored_id``: an id taken from the URL path. One holding U+0000 cannot exist, so it is
  answered as not found without asking the store.

Routes call these and stay thin; the errors are typed (``web/problems.py``) and become 4xx.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import msgspec

from protocols.errors import ChorusError, InvalidCursor, InvalidInput, MalformedJSON, NotFound
from web.problems import InvalidCharacter, JSONTooDeep, UnknownField

T = TypeVar("T")

#: deepest nesting of arrays and objects a body may have (a job needs 3)
MAX_JSON_DEPTH = 32
NUL = "\x00"
#: a complete JSON string (escapes included), so brackets inside strings are not counted
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_OPEN, _CLOSE = frozenset(b"[{"), frozenset(b"]}")
#: where msgspec says a ValidationError is (the end of its message: "- at `$.a[0]`", or
#: "- at `key` in `$.labels`") ...
_AT = re.compile(r" (?:at|in) `\$([^`]*)`$")
#: ... and the field it found missing there
_MISSING = re.compile(r"^Object missing required field `([^`]+)`")


def nests_deeper(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether arrays and objects in ``body`` nest deeper than ``limit``, without decoding.

    Brackets inside strings do not count. Bytes that are not JSON may be judged too deep
    (an unterminated string's brackets count): they are refused either way.
    """
    if body.count(b"[") + body.count(b"{") <= limit:  # the common case, at C speed
        return False
    depth = 0
    for byte in _STRING.sub(b"", body):
        if byte in _OPEN:
            depth += 1
            if depth > limit:
                return True
        elif byte in _CLOSE:
            depth -= 1
    return False


def json_object(body: bytes) -> dict[str, Any]:
    """``body`` decoded as a JSON object.

    Raises ``MalformedJSON`` (400: not JSON, not UTF-8, not an object), ``JSONTooDeep`` (400)
    or ``InvalidCharacter`` (422: a string or key holding U+0000, naming its field).
    """
    if nests_deeper(body):
        raise JSONTooDeep(
            f"The body nests arrays or objects deeper than {MAX_JSON_DEPTH} levels.",
            limit=MAX_JSON_DEPTH,
        )
    try:
        value = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise MalformedJSON(f"The body is not valid JSON: {exc}") from exc
    except UnicodeDecodeError as exc:
        reason = f"The body is not valid UTF-8 ({exc.reason}); JSON must be UTF-8."
        raise MalformedJSON(reason) from exc
    except RecursionError as exc:  # past the scan only if it misjudged bytes that are not JSON
        raise JSONTooDeep("The body nests arrays or objects too deeply.") from exc
    if not isinstance(value, dict):
        raise MalformedJSON("The body must be a JSON object.")
    # a decoded string can only hold U+0000 if the body spelt it as an escape
    if b"\\u0000" in body:
        for key, item in value.items():
            reject_nul(item, str(key), key=key)
    return value


def field_of(exc: msgspec.ValidationError) -> str | None:
    """The field a ``ValidationError`` is about, spelt as ``reject_nul`` spells it
    (``voice_settings.speed``, ``pronunciation_dictionary_locators[0].version_id``; a value
    under a key of a mapping counts as the mapping's, ``labels``); None: the body itself."""
    text = str(exc)
    at = _AT.search(text)
    path = at.group(1).lstrip(".").split("[...]", 1)[0] if at else ""
    if missing := _MISSING.match(text):
        path = f"{path}.{missing.group(1)}" if path else missing.group(1)
    return path or None


def decode_as(
    raw: dict[str, Any], kind: type[T], errors: Mapping[str, type[InvalidInput]] | None = None
) -> T:
    """``raw`` (from ``json_object``) as the Struct ``kind``.

    Raises ``UnknownField`` (422, naming them all) if ``kind`` forbids unknown fields and
    ``raw`` has some, else ``InvalidInput`` (422) with ``field`` (``field_of``) for anything
    that does not fit; ``errors`` gives another error class by top-level field (e.g.
    ``{"name": InvalidName}``)."""
    if kind.__struct_config__.forbid_unknown_fields:  # type: ignore[attr-defined]
        # the names as sent (renames applied); not msgspec.structs.fields(), which resolves
        # the type hints again on every call (~0.4 ms: a third of a cache hit's CPU)
        known = frozenset(kind.__struct_encode_fields__)  # type: ignore[attr-defined]
        unknown = sorted(str(name)[:64] for name in set(raw) - known)
        if unknown:
            names = ", ".join(f"'{name}'" for name in unknown)
            raise UnknownField(
                f"Unknown field(s): {names}. Allowed: {', '.join(sorted(known))}.",
                fields=unknown,
            )
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        field = field_of(exc)
        if field is None:
            raise InvalidInput(str(exc)) from exc
        error = (errors or {}).get(re.split(r"[.\[]", field, maxsplit=1)[0], InvalidInput)
        raise error(str(exc), field=field) from exc


def reject_nul(value: Any, field: str, *, key: str = "") -> None:
    """Raise ``InvalidCharacter`` naming ``field`` (``labels.mood``, ``locators[0].id``) if
    ``value``, one of its keys or ``key`` (the name it was given under) holds U+0000."""
    if NUL in key or (isinstance(value, str) and NUL in value):
        shown = field.replace(NUL, "\\u0000")
        raise InvalidCharacter(
            f"{shown} contains U+0000 (NUL), which cannot be stored; remove it.", field=shown
        )
    if isinstance(value, dict):
        for name, item in value.items():
            reject_nul(item, f"{field}.{name}", key=str(name))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            reject_nul(item, f"{field}[{index}]")


def stored_id(
    value: str, what: str, missing: Callable[[str], ChorusError] | None = None
) -> str:
    """``value`` (an id from the URL path), or the route's not-found answer if no row can have
    it (``missing(value)``, else ``NotFound("No <what> ...")``), given without a query that
    the database would refuse."""
    if NUL in value:
        raise missing(value) if missing is not None else NotFound(f"No {what} {value!r}.")
    return value


def encode_cursor(last_id: str) -> str:
    """An opaque pagination cursor: the last id of a page (``decode_cursor`` reads it)."""
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(value: str | None) -> str | None:
    """The id a ``cursor`` query parameter names; ``InvalidCursor`` (400) if it is not one
    this API returned."""
    if not value:
        return None
    try:
        if not value.replace("-", "").replace("_", "").isalnum():
            raise ValueError(value)
        after = base64.urlsafe_b64decode(value.encode() + b"==").decode()
        if NUL in after:
            raise ValueError(value)
        return after
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidCursor("cursor is not one this API returned.") from exc
