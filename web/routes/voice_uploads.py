"""Parsing and limits of ``POST /v1/voices`` (multipart): each violation a distinct 4xx.

Every sample must be audio by its bytes, not only by its name and type: ``probe_audio``
(``protocols/domain/audio.py``) decodes its headers and first frame in a worker thread, at most
``PROBE_THREADS`` at a time per process, before anything is sent to the provider or stored.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import msgspec
import trio
from quart import request

from protocols.domain.audio import probe_audio
from protocols.errors import ChorusError, InvalidInput
from protocols.messages import CloneFile, Visibility

MAX_FILES = 25
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_TOTAL_BYTES = 50 * 1024 * 1024
#: the request body limit of this route only (web/app.py): the files plus room for the form
MAX_UPLOAD_BODY = MAX_TOTAL_BYTES + 1024 * 1024
MAX_NAME = 100
MAX_DESCRIPTION = 500
MAX_LABELS = 10
MAX_LABEL_KEY = 50
MAX_LABEL_VALUE = 100
EXTENSIONS = {
    "mp3": "audio/mpeg", "wav": "audio/wav", "m4a": "audio/mp4", "ogg": "audio/ogg",
    "flac": "audio/flac", "webm": "audio/webm",
}
CONTENT_TYPES = frozenset({
    "audio/mpeg", "audio/mp3", "audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave",
    "audio/mp4", "audio/x-m4a", "audio/m4a", "audio/aac", "audio/ogg", "audio/opus",
    "audio/flac", "audio/x-flac", "audio/webm", "video/webm",
})
#: probes of uploaded samples running at once in this process (they are CPU work)
PROBE_THREADS = 2
_probe_slots: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("probe_slots")


class NoSamples(InvalidInput):
    code = "no_audio_files"
    title = "At least one audio sample is needed"


class TooManyFiles(InvalidInput):
    code = "too_many_files"
    title = "Too many audio samples"


class FileTooLarge(ChorusError):
    code = "file_too_large"
    status = 413
    title = "An audio sample is too large"


class UploadTooLarge(ChorusError):
    code = "upload_too_large"
    status = 413
    title = "The audio samples are too large together"


class UnsupportedAudioType(ChorusError):
    code = "unsupported_audio_type"
    status = 415
    title = "Unsupported audio type"


class InvalidName(InvalidInput):
    code = "invalid_name"
    title = "Invalid voice name"


class InvalidLabels(InvalidInput):
    code = "invalid_labels"
    title = "Invalid labels"


class NotMultipart(ChorusError):
    code = "unsupported_media_type"
    status = 415
    title = "Request body must be multipart/form-data"


def check_name(value: Any) -> str:
    name = str(value or "").strip()
    if not 1 <= len(name) <= MAX_NAME:
        raise InvalidName(f"name must be 1 to {MAX_NAME} characters.", limit=MAX_NAME)
    return name


def check_description(value: Any) -> str:
    text = str(value or "").strip()
    if len(text) > MAX_DESCRIPTION:
        raise InvalidInput(f"description is longer than {MAX_DESCRIPTION} characters.",
                           field="description", limit=MAX_DESCRIPTION)
    return text


def check_labels(value: Any) -> dict[str, str]:
    """A JSON object (or its text) of at most 10 short strings."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = msgspec.json.decode(value)
        except msgspec.DecodeError as exc:
            raise InvalidLabels("labels must be a JSON object of strings.") from exc
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidLabels("labels must be a JSON object of strings.")
    if len(value) > MAX_LABELS:
        raise InvalidLabels(f"at most {MAX_LABELS} labels.", limit=MAX_LABELS)
    for k, v in value.items():
        if not 1 <= len(k) <= MAX_LABEL_KEY or len(v) > MAX_LABEL_VALUE:
            raise InvalidLabels(
                f"label keys are 1 to {MAX_LABEL_KEY} characters, values at most"
                f" {MAX_LABEL_VALUE}.", label=k[:MAX_LABEL_KEY],
            )
    return dict(value)


def check_visibility(value: Any, default: Visibility = Visibility.private) -> Visibility:
    if value is None or value == "":
        return default
    if value not in (Visibility.private.value, Visibility.public.value):
        raise InvalidInput("visibility must be 'private' or 'public'.", field="visibility")
    return Visibility(value)


def _audio_type(filename: str, content_type: str) -> str:
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    base = (content_type or "").split(";", 1)[0].strip().lower()
    if ext in EXTENSIONS and (base in CONTENT_TYPES or base in ("", "application/octet-stream")):
        return base if base in CONTENT_TYPES else EXTENSIONS[ext]
    if not ext and base in CONTENT_TYPES:
        return base
    raise UnsupportedAudioType(
        f"{filename or 'a file'} ({base or 'no type'}) is not a supported audio file;"
        f" use {', '.join(sorted(EXTENSIONS))}.", supported=sorted(EXTENSIONS),
    )


def _slots() -> trio.CapacityLimiter:
    try:
        return _probe_slots.get()
    except LookupError:
        slots = trio.CapacityLimiter(PROBE_THREADS)
        _probe_slots.set(slots)
        return slots


async def check_audio(sample: CloneFile) -> None:
    """Raise ``InvalidAudio`` (422) unless the sample's bytes decode as audio.

    Bounded by its work, not by a clock: ``probe_audio`` reads at most ``PROBE_BYTES`` to find
    the streams and ``PROBE_PACKETS`` packets to find a frame (well under a second for any
    10 MB file), and ``PROBE_THREADS`` run at once. A deadline would not help: a thread cannot
    be cancelled, and abandoning it would not give its CPU back."""
    await trio.to_thread.run_sync(partial(probe_audio, sample.data, name=sample.filename),
                                  limiter=_slots())


async def parse_clone() -> dict[str, Any]:
    """The clone request: name, description, labels, visibility, language and the samples."""
    if request.mimetype != "multipart/form-data":
        raise NotMultipart(f"Content-Type must be multipart/form-data, not {request.mimetype}.")
    form, uploads = await request.form, await request.files
    parts = uploads.getlist("files") + uploads.getlist("files[]")
    name = check_name(form.get("name"))
    description = check_description(form.get("description"))
    labels = check_labels(form.get("labels"))
    visibility = check_visibility(form.get("visibility"))
    if not parts:
        raise NoSamples("send 1 to 25 audio files as 'files'.")
    if len(parts) > MAX_FILES:
        raise TooManyFiles(f"{len(parts)} files; at most {MAX_FILES}.", limit=MAX_FILES)
    files: list[CloneFile] = []
    total = 0
    for part in parts:
        filename = (part.filename or "sample").rsplit("/", 1)[-1][:200]
        kind = _audio_type(filename, part.content_type or "")
        data = part.read()
        if len(data) > MAX_FILE_BYTES:
            raise FileTooLarge(f"{filename} has {len(data)} bytes; at most {MAX_FILE_BYTES}.",
                               limit=MAX_FILE_BYTES)
        if not data:
            raise InvalidInput(f"{filename} is empty.", field="files")
        total += len(data)
        files.append(CloneFile(filename=filename, content_type=kind, data=data))
    if total > MAX_TOTAL_BYTES:
        raise UploadTooLarge(f"{total} bytes in all; at most {MAX_TOTAL_BYTES}.",
                             limit=MAX_TOTAL_BYTES)
    for sample in files:  # the cheap limits first: this is the costly check
        await check_audio(sample)
    language = str(form.get("language") or labels.get("language") or "en").strip()[:35]
    return dict(name=name, description=description, labels=labels, visibility=visibility,
                language=language, files=files)
