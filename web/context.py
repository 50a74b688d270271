"""``WebContext``: everything the routes need, built by the front door per incarnation."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable

import trio

from actors.ops.overview import Overview
from actors.pipeline.intake import Intake
from actors.storybooks.intake import StorybookIntake
from actors.storybooks.outputs import BookOutputs
from protocols.domain.dictionaries import DictionaryCatalog
from protocols.domain.voices import VoiceCatalog
from protocols.events import NO_EVENTS
from protocols.messages import Alignment, Audio, Job, Voice
from protocols.metrics.exposition import QueueFigures
from protocols.ports import (
    AccountStore,
    BlobStore,
    EventLog,
    EventSink,
    JobStore,
    SpeechProvider,
    StorybookStore,
)
from protocols.settings import Settings
from web.auth import KnownKeys
from web.compat.clips import ClipCache
from web.signing import AudioSigner


async def _no_track(voice: Voice) -> None:
    return None


def _nothing() -> None:
    return None


async def _no_alignment(audio: Audio) -> Alignment | None:
    return None


async def _no_marker(job_id: str) -> None:
    return None


@dataclasses.dataclass(frozen=True)
class WebContext:
    settings: Settings
    store: JobStore
    blobs: BlobStore
    provider: SpeechProvider
    #: submitting jobs (``POST /v1/jobs``): the process' one ``Intake``
    intake: Intake
    #: per-dependency readiness, e.g. ``{"redis": True, "postgres": False}``
    readiness: Callable[[], Awaitable[dict[str, bool]]]
    #: where routes publish events (never blocks)
    events: EventSink = NO_EVENTS
    #: what SSE streams read (its own bounded pool); None: the SSE routes answer 503
    event_log: EventLog | None = None
    #: set when the server is stopping: SSE streams end within one read block
    stopping: trio.Event | None = None
    #: voices (visibility, defaults, cloning); None: one built from ``store`` and ``provider``
    voices: VoiceCatalog | None = None
    #: API keys authenticated in the last few seconds (``web.auth``), per app
    known_keys: KnownKeys = dataclasses.field(default_factory=dict)
    #: schedule a new clone with VoiceSync at once (else it is found on its next rescan)
    track_voice: Callable[[Voice], Awaitable[None]] = _no_track
    #: storybooks (None: the storybook routes answer 503): the store, submitting, the outputs
    books: StorybookStore | None = None
    storybooks: StorybookIntake | None = None
    book_outputs: BookOutputs | None = None
    #: wake this process' StorybookRunner after a change to a book
    kick_runner: Callable[[], None] = _nothing
    #: pronunciation dictionaries (None: the dictionary routes answer 503)
    dictionaries: DictionaryCatalog | None = None
    #: a job's audio as it is made, chunk by chunk, ending with the clip's last byte
    #: (``actors/pipeline/live.py``); None: routes wait for the job and send the stored clip
    follow_audio: Callable[[Job], AsyncIterator[bytes]] | None = None
    #: a stored clip's character and word timings (None: not recorded for that clip)
    alignment_of: Callable[[Audio], Awaitable[Alignment | None]] = _no_alignment
    #: the queue's gauges for ``GET /metrics`` (stream lengths, pending, dead letters, slots),
    #: read from Redis per scrape; None: left out
    queue_figures: Callable[[], Awaitable[QueueFigures]] | None = None
    #: set a job's cancel marker in Redis before its cancel (``Service.mark_job_cancelled``);
    #: the default sets none (a cancelled interactive job may then cost one provider call)
    mark_job_cancelled: Callable[[str], Awaitable[None]] = _no_marker
    #: users, API keys and shared secrets (the admin routes; None: they answer 503)
    accounts: AccountStore | None = None
    #: signs finished jobs' audio URLs (``web/signing.py``); None: plain URLs needing a key
    audio_signer: AudioSigner | None = None
    #: the operator's figures (``actors/ops/overview.py``); None: the admin route answers 503
    overview: Callable[[], Awaitable[Overview]] | None = None
    #: put a dead letter back on its lane (by dead-letter or job id); the job ids redriven
    redrive: Callable[[str], Awaitable[list[str]]] | None = None
    #: clips the compatible routes sent recently, by audio id (``web/compat/clips.py``)
    clips: ClipCache = dataclasses.field(default_factory=ClipCache)
