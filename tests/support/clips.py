"""Small real audio clips for upload tests (clone samples must decode as audio), encoded with
``encode_pcm`` once per process, and bytes that only pretend to be audio."""

from __future__ import annotations

import math
import struct
import sys
from functools import cache
from pathlib import Path

from protocols.domain.audio import FORMATS, encode_pcm

RATE = 16000
#: a clip of each kind by file extension (the ElevenLabs format it is encoded in)
KINDS = {"mp3": "mp3_22050_32", "wav": "wav_16000", "ogg": "opus_48000_32"}


def tone(seconds: float, rate: int = RATE, freq: float = 440.0) -> bytes:
    """s16le mono sine."""
    n = round(seconds * rate)
    return struct.pack(
        f"<{n}h", *(int(8000 * math.sin(2 * math.pi * freq * i / rate)) for i in range(n))
    )


@cache
def clip(kind: str = "mp3", seconds: float = 0.5) -> bytes:
    """``seconds`` of a tone as a real ``kind`` file ("mp3", "wav" or "ogg")."""
    return encode_pcm(tone(seconds), RATE, FORMATS[KINDS[kind]])


def text_bytes() -> bytes:
    return b"These are my notes, not a recording.\n" * 40


@cache
def elf_bytes() -> bytes:
    """The first 64 KiB of the running Python: a real ELF binary (on Linux)."""
    with Path(sys.executable).resolve().open("rb") as f:
        return f.read(64 * 1024)
