"""Output formats by their ElevenLabs names, encoded with PyAV from 16-bit mono PCM.

Every provider hands us (or we produce) signed 16-bit little-endian mono PCM; ``encode_pcm``
resamples it with ``av.AudioResampler`` and muxes it once into the requested format. Stitch
clips in PCM (``concat_pcm``) and encode once: concatenating encoded mp3/opus files leaves
glitches and padding at the seams.

Content types:

- ``mp3_*`` → ``audio/mpeg``; ``opus_*`` → ``audio/ogg`` (libopus in an Ogg container, ``.opus``);
  ``wav_*`` → ``audio/wav`` (RIFF, pcm_s16le).
- ``pcm_*`` → ``application/octet-stream``: raw s16le without a header, exactly what ElevenLabs
  returns. Not ``audio/L16``: RFC 2586 defines L16 as *big-endian* (network order), so labelling
  little-endian bytes with it would be wrong.
- ``ulaw_8000`` → ``audio/basic`` (raw G.711 mu-law, 8 kHz mono); ``alaw_8000`` → ``audio/PCMA``
  (IANA-registered name for raw G.711 A-law, RFC 4856).

``encode_pcm`` is synchronous and CPU-bound (~10-300 ms for a 20 s clip): run it in
``trio.to_thread.run_sync``.

``probe_audio`` checks that uploaded bytes really are audio (a clone sample named ``.mp3`` may
be text or a binary): only the demuxers of the accepted upload types may open it, it needs an
audio stream with a sane sample rate, channel count and duration, and one frame of it must
decode. Also synchronous (a few ms, bounded by the probe size and a packet count): a thread.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from types import MappingProxyType

import av
import msgspec

from protocols.errors import InvalidAudio, UnsupportedFormat
from protocols.messages import DEFAULT_FORMAT

SAMPLE_WIDTH = 2  # bytes per sample: s16 mono


class AudioFormat(msgspec.Struct, frozen=True, kw_only=True):
    """One output format. ``bitrate`` is bits per second (None for PCM-like codecs)."""

    name: str  # ElevenLabs name, e.g. "mp3_44100_128"
    family: str  # "mp3" | "opus" | "wav" | "pcm" | "ulaw" | "alaw"
    container: str  # FFmpeg muxer name
    codec: str  # FFmpeg encoder name
    sample_rate: int
    bitrate: int | None
    content_type: str
    extension: str  # file extension without the dot

    @property
    def raw(self) -> bool:
        """True for headerless sample streams (pcm, ulaw, alaw)."""
        return self.family in ("pcm", "ulaw", "alaw")


_MP3 = (
    (22050, 32),
    (24000, 48),
    (44100, 32),
    (44100, 64),
    (44100, 96),
    (44100, 128),
    (44100, 192),
)
_OPUS_KBPS = (32, 64, 96, 128, 192)
_PCM_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)


def _build_formats() -> dict[str, AudioFormat]:
    out: list[AudioFormat] = []
    for rate, kbps in _MP3:
        out.append(
            AudioFormat(
                name=f"mp3_{rate}_{kbps}", family="mp3", container="mp3", codec="libmp3lame",
                sample_rate=rate, bitrate=kbps * 1000, content_type="audio/mpeg",
                extension="mp3",
            )
        )
    for kbps in _OPUS_KBPS:
        out.append(
            AudioFormat(
                name=f"opus_48000_{kbps}", family="opus", container="ogg", codec="libopus",
                sample_rate=48000, bitrate=kbps * 1000, content_type="audio/ogg",
                extension="opus",
            )
        )
    for rate in _PCM_RATES:
        out.append(
            AudioFormat(
                name=f"wav_{rate}", family="wav", container="wav", codec="pcm_s16le",
                sample_rate=rate, bitrate=None, content_type="audio/wav", extension="wav",
            )
        )
        out.append(
            AudioFormat(
                name=f"pcm_{rate}", family="pcm", container="s16le", codec="pcm_s16le",
                sample_rate=rate, bitrate=None, content_type="application/octet-stream",
                extension="pcm",
            )
        )
    out.append(
        AudioFormat(
            name="ulaw_8000", family="ulaw", container="mulaw", codec="pcm_mulaw",
            sample_rate=8000, bitrate=None, content_type="audio/basic", extension="ulaw",
        )
    )
    out.append(
        AudioFormat(
            name="alaw_8000", family="alaw", container="alaw", codec="pcm_alaw",
            sample_rate=8000, bitrate=None, content_type="audio/PCMA", extension="alaw",
        )
    )
    return {f.name: f for f in out}


#: Every supported format by ElevenLabs name.
FORMATS: Mapping[str, AudioFormat] = MappingProxyType(_build_formats())
FORMAT_NAMES: frozenset[str] = frozenset(FORMATS)


def parse_format(name: str | None) -> AudioFormat:
    """The format called ``name`` (None or "" → the default). Raises ``UnsupportedFormat``."""
    key = (name or DEFAULT_FORMAT).strip().lower()
    try:
        return FORMATS[key]
    except KeyError:
        supported = sorted(FORMATS)
        raise UnsupportedFormat(
            f"unsupported output_format {name!r}; supported: {', '.join(supported)}",
            supported=supported,
        ) from None


def pcm_duration(pcm: bytes | int, sample_rate: int) -> float:
    """Seconds of s16 mono PCM (``pcm`` is the bytes or their length)."""
    size = pcm if isinstance(pcm, int) else len(pcm)
    return size / SAMPLE_WIDTH / sample_rate


def silence(seconds: float, sample_rate: int) -> bytes:
    """``seconds`` of s16 mono digital silence."""
    return b"\0\0" * round(seconds * sample_rate)


def concat_pcm(clips: Iterable[bytes], sample_rate: int, gap_s: float = 0.0) -> bytes:
    """Join s16 mono clips (all at ``sample_rate``) with ``gap_s`` of silence between them."""
    gap = silence(gap_s, sample_rate) if gap_s > 0 else b""
    parts = list(clips)
    for clip in parts:
        if len(clip) % SAMPLE_WIDTH:
            raise ValueError("PCM clip has an odd number of bytes")
    return gap.join(parts)


def encode_pcm(pcm: bytes, sample_rate: int, fmt: AudioFormat) -> bytes:
    """Encode s16le mono ``pcm`` at ``sample_rate`` into ``fmt`` (resampling as needed).

    Synchronous and CPU-bound; call it from a worker thread.
    """
    if len(pcm) % SAMPLE_WIDTH:
        raise ValueError("PCM has an odd number of bytes")
    if sample_rate <= 0:
        raise ValueError("sample_rate must be positive")
    step = sample_rate * SAMPLE_WIDTH  # feed one second at a time: bounded memory
    return encode_pieces((pcm[i : i + step] for i in range(0, len(pcm), step)), sample_rate, fmt)


def encode_pieces(pieces: Iterable[bytes], sample_rate: int, fmt: AudioFormat) -> bytes:
    """Encode s16le mono PCM ``pieces`` at ``sample_rate`` into ``fmt`` as they come (memory:
    one piece plus the encoded output), resampling as needed. Synchronous and CPU-bound."""
    sink = io.BytesIO()
    with av.open(sink, mode="w", format=fmt.container) as out:
        stream = out.add_stream(fmt.codec, rate=fmt.sample_rate, layout="mono")
        if fmt.bitrate:
            stream.bit_rate = fmt.bitrate
        resampler = av.AudioResampler(
            format=stream.codec_context.format.name, layout="mono", rate=fmt.sample_rate
        )
        pts = 0
        for piece in pieces:
            frame = av.AudioFrame(format="s16", layout="mono", samples=len(piece) // SAMPLE_WIDTH)
            frame.planes[0].update(piece)
            frame.sample_rate = sample_rate
            frame.pts = pts
            pts += frame.samples
            for resampled in resampler.resample(frame):
                for packet in stream.encode(resampled):
                    out.mux(packet)
        for resampled in resampler.resample(None):
            for packet in stream.encode(resampled):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return sink.getvalue()


_RAW_DEMUXERS = {"pcm": "s16le", "ulaw": "mulaw", "alaw": "alaw"}


def decode_to_pcm(data: bytes, fmt: AudioFormat) -> bytes:
    """Decode ``data`` in ``fmt`` to s16le mono PCM at ``fmt.sample_rate`` (stitching, and the
    duration of audio a provider returned). Synchronous and CPU-bound: run it in a thread.
    Raises ``ValueError`` when the bytes are not audio in that format."""
    if fmt.family == "pcm":
        if len(data) % SAMPLE_WIDTH:
            raise ValueError("PCM has an odd number of bytes")
        return data
    options = {}
    container = None
    if fmt.raw:
        container = _RAW_DEMUXERS[fmt.family]
        options = {"sample_rate": str(fmt.sample_rate), "ch_layout": "mono"}
    out = bytearray()
    try:
        with av.open(io.BytesIO(data), mode="r", format=container, options=options) as source:
            stream = source.streams.audio[0]
            resampler = av.AudioResampler(format="s16", layout="mono", rate=fmt.sample_rate)
            for frame in source.decode(stream):
                for resampled in resampler.resample(frame):
                    out += bytes(resampled.planes[0])[: resampled.samples * SAMPLE_WIDTH]
            for resampled in resampler.resample(None):
                out += bytes(resampled.planes[0])[: resampled.samples * SAMPLE_WIDTH]
    except (av.error.FFmpegError, IndexError) as exc:
        raise ValueError(f"not {fmt.name} audio: {exc}") from exc
    return bytes(out)


def audio_duration(data: bytes, fmt: AudioFormat) -> float:
    """Seconds of audio in ``data`` (decodes it; raw formats are measured directly)."""
    if fmt.raw:
        width = SAMPLE_WIDTH if fmt.family == "pcm" else 1
        return len(data) / width / fmt.sample_rate
    return pcm_duration(decode_to_pcm(data, fmt), fmt.sample_rate)


# --- probing uploaded audio ----------------------------------------------------------------------

#: the only demuxers an upload may be opened with: those of mp3, wav, m4a/mp4, ogg/opus, flac,
#: webm and raw aac. Probing anything else (hls or concat playlists open other URLs and files,
#: subtitle and image demuxers are not audio) is refused by FFmpeg itself.
PROBE_DEMUXERS = "mp3,wav,mov,mp4,m4a,ogg,flac,matroska,webm,aac"
PROBE_BYTES = 2 * 1024 * 1024  # how much FFmpeg may read to identify the streams
PROBE_PACKETS = 64  # packets of the audio stream read to find one decodable frame
SAMPLE_RATES = (4000, 384_000)  # a sane sample rate, inclusive
MAX_CHANNELS = 8
MAX_DURATION_S = 3 * 3600.0  # more is a lying header (an upload is at most a few MB)


class AudioProbe(msgspec.Struct, frozen=True, kw_only=True):
    """What ``probe_audio`` found. ``duration_s`` is None when the container does not say
    (a browser's MediaRecorder webm, say)."""

    container: str  # FFmpeg demuxer name, e.g. "mp3", "wav", "mov,mp4,m4a,3gp,3g2,mj2"
    codec: str
    sample_rate: int
    channels: int
    duration_s: float | None


def probe_audio(data: bytes, *, name: str = "the file") -> AudioProbe:
    """Check that ``data`` is audio by decoding its headers and its first frame.

    Raises ``InvalidAudio`` naming ``name`` when it is not: no container FFmpeg recognises among
    ``PROBE_DEMUXERS``, no audio stream, an insane sample rate, channel count or duration, or
    no frame that decodes. Synchronous and bounded (``PROBE_BYTES``, ``PROBE_PACKETS``)."""
    options = {"format_whitelist": PROBE_DEMUXERS, "probesize": str(PROBE_BYTES)}
    try:
        with av.open(io.BytesIO(data), mode="r", container_options=options,
                     metadata_errors="ignore") as source:
            if not source.streams.audio:
                raise InvalidAudio(f"{name} has no audio stream.", file=name)
            stream = source.streams.audio[0]
            frame = _first_frame(source, stream)
            if frame is None:
                raise InvalidAudio(f"{name} has no audio frame that decodes.", file=name)
            found = AudioProbe(
                container=source.format.name,
                codec=stream.codec_context.name,
                sample_rate=stream.codec_context.sample_rate or frame.sample_rate,
                channels=stream.codec_context.channels or len(frame.layout.channels),
                duration_s=_duration(source, stream),
            )
    except (av.error.FFmpegError, ValueError, EOFError) as exc:
        raise InvalidAudio(f"{name} is not a readable audio file ({type(exc).__name__}).",
                           file=name) from exc
    return _sane(found, name)


def _first_frame(source: av.container.InputContainer, stream: av.AudioStream
                 ) -> av.AudioFrame | None:
    """The first decoded frame with samples within ``PROBE_PACKETS`` packets; a packet that
    fails to decode is skipped (real files may start with junk)."""
    for count, packet in enumerate(source.demux(stream)):
        if count >= PROBE_PACKETS:
            break
        try:
            frames = packet.decode()
        except av.error.InvalidDataError:
            continue
        for frame in frames:
            if frame.samples > 0:
                return frame
    return None


def _duration(source: av.container.InputContainer, stream: av.AudioStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if source.duration is not None and source.duration > 0:
        return source.duration / av.time_base
    return None


def _sane(found: AudioProbe, name: str) -> AudioProbe:
    low, high = SAMPLE_RATES
    if not low <= found.sample_rate <= high:
        raise InvalidAudio(f"{name} declares a sample rate of {found.sample_rate} Hz.", file=name)
    if not 1 <= found.channels <= MAX_CHANNELS:
        raise InvalidAudio(f"{name} declares {found.channels} channels.", file=name)
    if found.duration_s is not None and not 0 < found.duration_s <= MAX_DURATION_S:
        raise InvalidAudio(f"{name} declares a duration of {found.duration_s:.0f} s.", file=name)
    return found


# --- encoding while the audio is made ------------------------------------------------------------


class _Tap:
    """A write-only, non-seekable output: muxers write a streaming header (an mp3 without the
    Xing/LAME frame, a WAV whose sizes say "unknown") and never go back, so every byte
    written is final and can be handed out at once."""

    def __init__(self) -> None:
        self.pending = bytearray()

    def write(self, data: bytes) -> int:
        self.pending += data
        return len(data)

    def flush(self) -> None:
        return None

    def take(self) -> bytes:
        out = bytes(self.pending)
        self.pending.clear()
        return out


class StreamEncoder:
    """Encode s16le mono PCM pieces into ``fmt`` and hand out the encoded bytes as they are
    final: ``feed(piece)`` and ``finish()`` return the bytes produced by that call (maybe
    none: a codec or muxer may hold some back); all of them joined are the whole clip, a
    valid file of that format (with a streaming header, see ``_Tap``). Synchronous and
    CPU-bound (a worker thread); one call at a time."""

    def __init__(self, sample_rate: int, fmt: AudioFormat) -> None:
        if sample_rate <= 0:
            raise ValueError("sample_rate must be positive")
        self._rate = sample_rate
        self._tap = _Tap()
        # Ogg pages hold a second of audio by default: a tenth, so opus flows too
        options = {"page_duration": "100000"} if fmt.container == "ogg" else {}
        self._out = av.open(self._tap, mode="w", format=fmt.container, options=options)
        self._stream = self._out.add_stream(fmt.codec, rate=fmt.sample_rate, layout="mono")
        if fmt.bitrate:
            self._stream.bit_rate = fmt.bitrate
        self._resampler = av.AudioResampler(
            format=self._stream.codec_context.format.name, layout="mono", rate=fmt.sample_rate
        )
        self._pts = 0
        self.samples = 0  # PCM samples fed so far

    def feed(self, piece: bytes) -> bytes:
        if len(piece) % SAMPLE_WIDTH:
            raise ValueError("PCM has an odd number of bytes")
        if piece:
            frame = av.AudioFrame(format="s16", layout="mono", samples=len(piece) // SAMPLE_WIDTH)
            frame.planes[0].update(piece)
            frame.sample_rate = self._rate
            frame.pts = self._pts
            self._pts += frame.samples
            self.samples += frame.samples
            for resampled in self._resampler.resample(frame):
                for packet in self._stream.encode(resampled):
                    self._out.mux(packet)
        return self._tap.take()

    def finish(self) -> bytes:
        try:
            for resampled in self._resampler.resample(None):
                for packet in self._stream.encode(resampled):
                    self._out.mux(packet)
            for packet in self._stream.encode(None):
                self._out.mux(packet)
        finally:
            self._out.close()
        return self._tap.take()

    def close(self) -> None:
        """Give up without finishing (an error elsewhere)."""
        self._out.close()
