"""OpenAI's ``aac`` and ``flac``, which Chorus does not store: the job is made (and cached) as
``pcm_24000`` and the clip is encoded again at the edge, in a worker thread (PyAV; ~30 ms for
flac, ~100 ms for aac per 3 s of speech on a slow machine). These formats are not in
``protocols/domain/audio.FORMATS``: no provider is asked for them."""

from __future__ import annotations

from functools import partial

import trio

from protocols.domain.audio import AudioFormat, encode_pcm

RATE = 24000
SOURCE = f"pcm_{RATE}"
EDGE_FORMATS = {
    "aac": AudioFormat(name="aac_24000", family="aac", container="adts", codec="aac",
                       sample_rate=RATE, bitrate=64000, content_type="audio/aac",
                       extension="aac"),
    "flac": AudioFormat(name="flac_24000", family="flac", container="flac", codec="flac",
                        sample_rate=RATE, bitrate=None, content_type="audio/flac",
                        extension="flac"),
}


async def encode(pcm: bytes, fmt: AudioFormat) -> bytes:
    """``pcm`` (s16le mono at 24 kHz, the job's clip) in ``fmt``."""
    return await trio.to_thread.run_sync(partial(encode_pcm, pcm, RATE, fmt))
