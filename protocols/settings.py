"""Settings: one frozen struct, read from the environment (see README "Configuration")."""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path

import msgspec

from protocols.errors import ConfigError
from protocols.faults import FaultPlan

if sys.platform != "win32":
    import fcntl
else:  # pragma: no cover
    fcntl = None


class Secret(str):
    """A string that never shows itself in reprs, logs or errors."""

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:  # f-strings and %s formatting print the mask, never the key
        return "***"

    def reveal(self) -> str:
        return str.__str__(self)


MAX_LOCAL_CONSUMERS = 64
#: data dir -> (consumer name, the open lock file that claims it); kept for the process' life
_CLAIMED: dict[Path, tuple[str, object]] = {}


def _try_lock(path: Path) -> object | None:
    """An open file holding an exclusive lock on ``path``, or None if a live process has it
    (the kernel drops the lock when its holder dies, even on SIGKILL)."""
    if fcntl is None:  # no flock on this platform: names are not guarded
        return None
    f = open(path, "a")  # held open on purpose: closing it drops the lock
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


def _read_or_create_name(path: Path) -> str:
    try:
        if name := path.read_text().strip():
            return name
    except FileNotFoundError:
        pass
    name = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(name + "\n")
    tmp.replace(path)
    return name


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _languages(value: str) -> tuple[str, ...]:
    """``"en, ko-KR"`` -> ``("en", "ko-kr")``: BCP-47-ish tags, lower case, ``-`` separated
    (``protocols.domain.languages`` compares them so)."""
    return tuple(dict.fromkeys(tag.replace("_", "-").lower() for tag in _csv(value)))


def flag(value: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case)."""
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    redis_url: str | None = None  # None -> embedded Valkey under data_dir
    database_url: Secret | None = None  # None -> embedded Postgres under data_dir
    elevenlabs_api_key: Secret | None = None
    data_dir: str = "./var"
    host: str = "127.0.0.1"
    port: int = 8000
    concurrency: int = 3  # TTS actors in this process
    consumer: str | None = None  # stable consumer name; None -> persisted in data_dir
    redis_prefix: str = "chorus"
    lease_s: float = 30.0  # an entry idle this long (no renewal) is reclaimed by others
    reclaim_interval_s: float = 5.0  # how often XAUTOCLAIM looks for abandoned entries
    max_deliveries: int = 5  # deliveries before an entry is dead-lettered
    read_block_ms: int = 1000  # XREADGROUP BLOCK; the stop flag is checked between reads
    shutdown_grace_s: float = 20.0  # running jobs get this long to finish on SIGTERM
    submit_timeout_s: float = 2.0  # a full job channel past this answers 503
    max_text_chars: int = 5000
    max_metadata_bytes: int = 4096  # a job's or a storybook's metadata, JSON-encoded
    restart_intensity: int = 10  # more than this many restarts ...
    restart_period_s: float = 60.0  # ... within this many seconds -> give up, exit non-zero
    outage_backoff_s: float = 5.0  # longest wait between restarts while Redis/Postgres is away
    embedded_watch_s: float = 0.5  # how often the embedded Valkey/Postgres are checked
    redis_timeout_s: float = 2.0
    db_timeout_s: float = 5.0
    # provider: a name from the registry (protocols/providers); None -> ElevenLabs when a key
    # is set, else the embedded engines (Piper for English when installed, espeak-ng)
    provider: str | None = None
    piper_threads: int = 1  # onnxruntime threads per Piper synthesis (cpu_count // this at once)
    fake_latency_s: float = 0.0  # each call of the built-in fake provider (benchmarks, tests)
    elevenlabs_base_url: str | None = None  # None -> https://api.elevenlabs.io
    elevenlabs_timeout_s: float = 120.0  # per request (connect, read, write)
    elevenlabs_default_voice_id: str | None = None  # None -> the first premade voice
    elevenlabs_dictionaries: tuple[str, ...] = ()  # "id" or "id:version", at most 3
    #: the model of jobs that name neither a model nor a preference (when it speaks their
    #: language); None -> chosen by ``model_preference``
    elevenlabs_model_id: str | None = None
    #: languages jobs and storybooks may ask for (lower-case tags; a primary subtag such as
    #: "en" admits every "en-*"); empty: any language the provider speaks
    supported_languages: tuple[str, ...] = ()
    model_preference: str = "balanced"  # balanced | latency | quality | expressive
    provider_concurrency: int = 3  # requests in flight per provider account, all processes
    provider_lease_s: float | None = None  # slot / single-flight lock lease; None: lease_s
    provider_max_attempts: int = 4  # tries per delivery on transient errors
    provider_wait_s: float = 120.0  # longest wait for the account inside one delivery
    cache_scope: str = "global"  # global: identical requests share audio across users | owner
    events_maxlen: int = 100_000  # global event stream, trimmed approximately (MAXLEN ~)
    owner_events_maxlen: int = 10_000  # each user's event stream, trimmed approximately
    owner_events_ttl_s: int = 7 * 24 * 3600  # idle user stream expires after this
    sse_max_streams: int = 100  # concurrent SSE streams per process; more answer 503
    sse_heartbeat_s: float = 15.0  # comment line sent on an idle SSE stream
    #: browser origins allowed to call the API (CORS); "*" for any; empty: CORS off
    cors_origins: tuple[str, ...] = ()
    #: signs audio URLs (HMAC-SHA256); the same on every host. None: one made once and kept
    #: in Postgres (``server_secrets``)
    signing_key: Secret | None = None
    audio_url_ttl_s: float = 3600.0  # a finished job's signed audio URL works this long
    live_ttl_s: float = 300.0  # a stream job's live audio (Redis) expires this long after a write
    live_maxlen: int = 4096  # chunks kept per job's live stream (approximately)
    live_wait_s: float = 600.0  # longest a follower of a job's audio waits for it to end
    voice_ready_timeout_s: float = 1800.0  # a clone not ready by then is failed
    voice_poll_s: float = 2.0  # first poll of a processing clone; doubles up to voice_poll_max_s
    voice_poll_max_s: float = 15.0
    voice_rescan_s: float = 60.0  # VoiceSync re-reads the voices to track from Postgres
    orphan_age_s: float = 600.0  # a never-started job queued this long is checked for an XADD
    orphan_sweep_interval_s: float = 60.0
    storybook_max_lines: int = 2000  # lines in one storybook
    storybook_max_chars: int = 200_000  # characters in one storybook
    #: lines of one book released into the batch lane and not yet ended (the runner's window);
    #: 0: twice the provider concurrency, enough to keep every slot busy between refills
    storybook_window: int = 0
    storybook_reconcile_s: float = 5.0  # the runner re-reads every active book from Postgres
    storybook_progress_s: float = 1.0  # storybook.progress events, at most one per book per this
    #: where audio lives: None -> files under data_dir/audio (one host); s3://bucket/prefix ->
    #: an S3-compatible object store shared by every host (protocols/blobs/s3.py)
    blob_url: str | None = None
    s3_endpoint_url: str | None = None  # None -> AWS S3; else MinIO, R2, Ceph, a test server...
    aws_region: str | None = None  # None -> us-east-1
    aws_access_key_id: Secret | None = None  # None (with the secret): no credentials given
    aws_secret_access_key: Secret | None = None
    aws_session_token: Secret | None = None
    blob_timeout_s: float = 30.0  # one object-store read or write, its retries included
    blob_concurrency: int = 16  # object-store requests in flight per process
    #: longest a compatible convert (ElevenLabs / OpenAI routes) waits for its job (then 504)
    sync_wait_s: float = 120.0
    faults: FaultPlan | None = None  # tests only
    #: who may read GET /metrics: loopback (admins, or a keyless request from 127.0.0.1/::1)
    #: | admin (admins only) | off (404)
    metrics: str = "loopback"
    metrics_dir: str | None = None  # multi-process metric files; None -> data_dir/metrics
    access_log: bool = True  # one INFO line per HTTP request (logger chorus.access)
    log_format: str = "text"  # text | json (one JSON object per line)
    #: each process's heartbeat into the shared process list (the overview); a process not
    #: heard of for 3 heartbeats has aged out
    process_heartbeat_s: float = 5.0

    @property
    def book_window(self) -> int:
        return self.storybook_window or 2 * self.provider_concurrency

    @property
    def provider_lease(self) -> float:
        """Lease of a provider slot and of a single-flight lock (renewed every third)."""
        return self.provider_lease_s if self.provider_lease_s is not None else self.lease_s

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def metrics_path(self) -> Path:
        return Path(self.metrics_dir) if self.metrics_dir else self.data_path / "metrics"

    def consumer_name(self) -> str:
        """The stable consumer name: configured, or created once and kept in the data dir.

        A persisted name is claimed with an exclusive lock held until the process exits, so
        two live processes sharing a data dir never share a name (a worker takes back the
        stream entries and provider slots of its name at start, as those of its own dead
        incarnation): the second one takes the next name, ``consumer-name.1`` and so on. A
        single worker always gets ``consumer-name``; a restarted one gets a free name again.
        """
        if self.consumer:
            return self.consumer
        data = self.data_path.resolve()
        if (held := _CLAIMED.get(data)) is not None:  # this process already holds one
            return held[0]
        data.mkdir(parents=True, exist_ok=True)
        for i in range(MAX_LOCAL_CONSUMERS):
            path = data / ("consumer-name" if i == 0 else f"consumer-name.{i}")
            lock = _try_lock(path.with_name(path.name + ".lock"))
            if lock is None and fcntl is not None:
                continue  # a live process holds this name
            name = _read_or_create_name(path)
            _CLAIMED[data] = (name, lock)
            return name
        raise ConfigError(
            f"{MAX_LOCAL_CONSUMERS} processes already use {data}: set CHORUS_CONSUMER"
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if env is None else env
        raw: dict[str, object] = {}

        def put(field: str, var: str, kind: type = str) -> None:
            value = env.get(var)
            if value is None or value == "":
                return
            try:
                raw[field] = kind(value)
            except ValueError as exc:
                raise ConfigError(f"{var}={value!r} is not a valid {kind.__name__}") from exc

        put("redis_url", "REDIS_URL")
        put("database_url", "DATABASE_URL", Secret)
        put("elevenlabs_api_key", "ELEVENLABS_API_KEY", Secret)
        put("data_dir", "CHORUS_DATA_DIR")
        put("host", "CHORUS_HOST")
        put("port", "CHORUS_PORT", int)
        put("concurrency", "CHORUS_CONCURRENCY", int)
        put("consumer", "CHORUS_CONSUMER")
        put("redis_prefix", "CHORUS_REDIS_PREFIX")
        put("lease_s", "CHORUS_LEASE_S", float)
        put("reclaim_interval_s", "CHORUS_RECLAIM_INTERVAL_S", float)
        put("max_deliveries", "CHORUS_MAX_DELIVERIES", int)
        put("read_block_ms", "CHORUS_READ_BLOCK_MS", int)
        put("shutdown_grace_s", "CHORUS_SHUTDOWN_GRACE_S", float)
        put("submit_timeout_s", "CHORUS_SUBMIT_TIMEOUT_S", float)
        put("max_text_chars", "CHORUS_MAX_TEXT_CHARS", int)
        put("max_metadata_bytes", "CHORUS_MAX_METADATA_BYTES", int)
        put("restart_intensity", "CHORUS_RESTART_INTENSITY", int)
        put("restart_period_s", "CHORUS_RESTART_PERIOD_S", float)
        put("outage_backoff_s", "CHORUS_OUTAGE_BACKOFF_S", float)
        put("embedded_watch_s", "CHORUS_EMBEDDED_WATCH_S", float)
        put("provider", "CHORUS_PROVIDER")
        put("fake_latency_s", "CHORUS_FAKE_LATENCY_S", float)
        put("piper_threads", "CHORUS_PIPER_THREADS", int)
        put("elevenlabs_base_url", "ELEVENLABS_BASE_URL")
        put("elevenlabs_timeout_s", "ELEVENLABS_TIMEOUT_S", float)
        put("elevenlabs_default_voice_id", "ELEVENLABS_DEFAULT_VOICE_ID")
        put("elevenlabs_dictionaries", "ELEVENLABS_PRONUNCIATION_DICTIONARIES", _csv)
        put("elevenlabs_model_id", "ELEVENLABS_MODEL_ID")
        put("supported_languages", "CHORUS_SUPPORTED_LANGUAGES", _languages)
        put("model_preference", "CHORUS_MODEL_PREFERENCE")
        put("provider_concurrency", "CHORUS_PROVIDER_CONCURRENCY", int)
        put("provider_lease_s", "CHORUS_PROVIDER_LEASE_S", float)
        put("provider_max_attempts", "CHORUS_PROVIDER_MAX_ATTEMPTS", int)
        put("provider_wait_s", "CHORUS_PROVIDER_WAIT_S", float)
        put("cache_scope", "CHORUS_CACHE_SCOPE")
        put("events_maxlen", "CHORUS_EVENTS_MAXLEN", int)
        put("owner_events_maxlen", "CHORUS_OWNER_EVENTS_MAXLEN", int)
        put("sse_max_streams", "CHORUS_SSE_MAX_STREAMS", int)
        put("cors_origins", "CHORUS_CORS_ORIGINS", _csv)
        put("signing_key", "CHORUS_SIGNING_KEY", Secret)
        put("audio_url_ttl_s", "CHORUS_AUDIO_URL_TTL_S", float)
        put("live_ttl_s", "CHORUS_LIVE_TTL_S", float)
        put("live_maxlen", "CHORUS_LIVE_MAXLEN", int)
        put("live_wait_s", "CHORUS_LIVE_WAIT_S", float)
        put("voice_ready_timeout_s", "CHORUS_VOICE_READY_TIMEOUT_S", float)
        put("orphan_age_s", "CHORUS_ORPHAN_AGE_S", float)
        put("voice_poll_s", "CHORUS_VOICE_POLL_S", float)
        put("storybook_max_lines", "CHORUS_STORYBOOK_MAX_LINES", int)
        put("storybook_max_chars", "CHORUS_STORYBOOK_MAX_CHARS", int)
        put("storybook_window", "CHORUS_STORYBOOK_WINDOW", int)
        put("storybook_reconcile_s", "CHORUS_STORYBOOK_RECONCILE_S", float)
        put("blob_url", "CHORUS_BLOB_URL")
        put("s3_endpoint_url", "CHORUS_S3_ENDPOINT_URL")
        put("aws_region", "AWS_DEFAULT_REGION")
        put("aws_region", "AWS_REGION")  # wins over AWS_DEFAULT_REGION, as in the AWS SDKs
        put("aws_access_key_id", "AWS_ACCESS_KEY_ID", Secret)
        put("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY", Secret)
        put("aws_session_token", "AWS_SESSION_TOKEN", Secret)
        put("blob_timeout_s", "CHORUS_BLOB_TIMEOUT_S", float)
        put("blob_concurrency", "CHORUS_BLOB_CONCURRENCY", int)
        put("metrics", "CHORUS_METRICS")
        put("metrics_dir", "CHORUS_METRICS_DIR")
        put("access_log", "CHORUS_ACCESS_LOG", flag)
        put("log_format", "CHORUS_LOG_FORMAT")
        put("sync_wait_s", "CHORUS_SYNC_WAIT_S", float)
        put("process_heartbeat_s", "CHORUS_PROCESS_HEARTBEAT_S", float)
        raw.update(overrides)
        settings = cls(**raw)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.model_preference not in ("balanced", "latency", "quality", "expressive"):
            raise ConfigError(
                "CHORUS_MODEL_PREFERENCE must be balanced, latency, quality or expressive"
            )
        if self.cache_scope not in ("global", "owner"):
            raise ConfigError("CHORUS_CACHE_SCOPE must be global or owner")
        if self.provider_concurrency < 1 or self.provider_max_attempts < 1:
            raise ConfigError(
                "CHORUS_PROVIDER_CONCURRENCY and CHORUS_PROVIDER_MAX_ATTEMPTS must be at least 1"
            )
        if (self.provider_lease_s is not None and self.provider_lease_s <= 0) or (
            self.elevenlabs_timeout_s <= 0
        ):
            raise ConfigError("CHORUS_PROVIDER_LEASE_S and ELEVENLABS_TIMEOUT_S must be positive")
        if self.elevenlabs_model_id is not None and not self.elevenlabs_model_id.strip():
            raise ConfigError("ELEVENLABS_MODEL_ID cannot be blank")
        if any(not tag or "," in tag for tag in self.supported_languages):
            raise ConfigError("CHORUS_SUPPORTED_LANGUAGES is a comma-separated list of tags")
        if len(self.elevenlabs_dictionaries) > 3:
            raise ConfigError("ELEVENLABS_PRONUNCIATION_DICTIONARIES takes at most 3 entries")
        if not self.process_heartbeat_s > 0:
            raise ConfigError("CHORUS_PROCESS_HEARTBEAT_S must be positive")
        if self.fake_latency_s < 0:
            raise ConfigError("CHORUS_FAKE_LATENCY_S cannot be negative")
        if self.concurrency < 1:
            raise ConfigError("CHORUS_CONCURRENCY must be at least 1")
        if self.piper_threads < 1:
            raise ConfigError("CHORUS_PIPER_THREADS must be at least 1")
        if not 0 <= self.port <= 65535:
            raise ConfigError("CHORUS_PORT must be between 0 and 65535")
        if self.storybook_max_lines < 1 or self.storybook_max_chars < 1 or (
            self.storybook_window < 0 or self.storybook_reconcile_s <= 0
        ):
            raise ConfigError(
                "CHORUS_STORYBOOK_MAX_LINES and _MAX_CHARS must be at least 1, _WINDOW at least 0,"
                " _RECONCILE_S positive"
            )
        if self.blob_url is not None and not self.blob_url.startswith("s3://"):
            raise ConfigError("CHORUS_BLOB_URL must look like s3://bucket or s3://bucket/prefix")
        if self.blob_url is not None and (
            (self.aws_access_key_id is None) != (self.aws_secret_access_key is None)
        ):
            raise ConfigError("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together")
        if self.blob_timeout_s <= 0 or self.blob_concurrency < 1:
            raise ConfigError(
                "CHORUS_BLOB_TIMEOUT_S must be positive, CHORUS_BLOB_CONCURRENCY at least 1"
            )
        if self.max_deliveries < 1:
            raise ConfigError("CHORUS_MAX_DELIVERIES must be at least 1")
        if self.metrics not in ("loopback", "admin", "off"):
            raise ConfigError("CHORUS_METRICS must be loopback, admin or off")
        if self.log_format not in ("text", "json"):
            raise ConfigError("CHORUS_LOG_FORMAT must be text or json")
        if self.sync_wait_s <= 0:
            raise ConfigError("CHORUS_SYNC_WAIT_S must be positive")
        if self.lease_s <= 0 or self.reclaim_interval_s <= 0:
            raise ConfigError("CHORUS_LEASE_S and CHORUS_RECLAIM_INTERVAL_S must be positive")
        if self.read_block_ms < 1:
            raise ConfigError("CHORUS_READ_BLOCK_MS must be at least 1")
        if not 0 < self.audio_url_ttl_s <= 7 * 24 * 3600:
            raise ConfigError("CHORUS_AUDIO_URL_TTL_S must be positive and at most a week")
        if self.signing_key is not None and len(self.signing_key.reveal()) < 16:
            raise ConfigError("CHORUS_SIGNING_KEY must be at least 16 characters")
        for origin in self.cors_origins:
            if origin != "*" and (
                "://" not in origin or origin.endswith("/") or origin.count("/") != 2
            ):
                raise ConfigError(
                    "CHORUS_CORS_ORIGINS is a comma list of origins such as"
                    f" https://app.example.com (no path), or *; not {origin!r}"
                )
        if self.live_ttl_s <= 0 or self.live_maxlen < 1 or self.live_wait_s <= 0:
            raise ConfigError(
                "CHORUS_LIVE_TTL_S and CHORUS_LIVE_WAIT_S must be positive, "
                "CHORUS_LIVE_MAXLEN at least 1"
            )
        if self.events_maxlen < 1 or self.owner_events_maxlen < 1 or self.sse_max_streams < 1:
            raise ConfigError(
                "CHORUS_EVENTS_MAXLEN, CHORUS_OWNER_EVENTS_MAXLEN and CHORUS_SSE_MAX_STREAMS "
                "must be at least 1"
            )
