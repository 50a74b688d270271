"""Content-addressed audio in an S3-compatible object store: the ``BlobStore`` every host shares.

``CHORUS_BLOB_URL=s3://bucket/prefix`` with ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_REGION`` and, for MinIO, R2, Ceph, Garage or a test server, ``CHORUS_S3_ENDPOINT_URL``. The
layout under the prefix is the file store's (``<key[:2]>/<key>.<ext>``), and the path handed
back (stored in Postgres) is the same relative path, so a row written on one host is read on any.

The client is ``obstore`` (Rust's ``object_store``): its blocking calls release the GIL and are
safe from worker threads, which is how they run here (``trio.to_thread``, at most
``CHORUS_BLOB_CONCURRENCY`` at once), so nothing needs asyncio and nothing blocks the event loop.
It signs requests itself (SigV4, also for pre-signed URLs) and retries 5xx, dropped connections
and read timeouts with exponential backoff; a PUT is retried here too (a PUT that timed out is not
retried by the client, and writing the same key again is harmless). Every call has a deadline
(``CHORUS_BLOB_TIMEOUT_S``, retries included); a thread still blocked past it is abandoned, not
waited for (it ends on the client's own timeout).

A PUT is atomic in S3 (readers see the old object or the new one), so ``put`` is idempotent: the
newest write wins, as in the file store. Errors are ``BlobStoreError`` (retryable) or
``BlobMissing``; their messages name the operation and the path, never a credential or a
signed query string.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import obstore
import trio
from obstore.exceptions import NotFoundError
from obstore.store import S3Store

from protocols.blobs import BlobMissing, BlobStoreError
from protocols.blobs.files import FileBlobStore
from protocols.errors import ChorusError, ConfigError
from protocols.settings import Settings

log = logging.getLogger("chorus.blobs")

#: tries of one PUT (each with the client's own retries of 5xx and dropped connections)
PUT_ATTEMPTS = 3
#: first pause between two tries of a PUT (doubled each time, with jitter)
PUT_BACKOFF_S = 0.2
#: the client's retries of one request (5xx, connection errors, read timeouts)
CLIENT_RETRIES = 3
#: chunks of a streamed read
CHUNK = 256 * 1024
_QUERY = re.compile(r"\?\S*")
#: only its lexical path checks are used (no filesystem access)
_PATHS = FileBlobStore("/")


def parse_blob_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")`` (the prefix may be empty)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError("CHORUS_BLOB_URL must look like s3://bucket or s3://bucket/prefix")
    return parts.netloc, parts.path.strip("/")


class S3BlobStore:
    """``BlobStore`` on one bucket (and prefix) of an S3-compatible object store."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        timeout_s: float = 30.0,
        concurrency: int = 16,
    ) -> None:
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.timeout_s = timeout_s
        self._limiter = trio.CapacityLimiter(concurrency)
        # values never to be shown in an error message, whatever the client puts there
        self._hidden = [s for s in (access_key_id, secret_access_key, session_token) if s]
        config: dict[str, Any] = {"region": region or "us-east-1"}
        if access_key_id and secret_access_key:
            config["access_key_id"] = access_key_id
            config["secret_access_key"] = secret_access_key
            if session_token:
                config["session_token"] = session_token
        if endpoint_url:
            # MinIO, R2, moto...: path-style addressing under the given endpoint
            config["endpoint"] = endpoint_url.rstrip("/")
            config["virtual_hosted_style_request"] = False
        self._store = S3Store(
            bucket,
            prefix=self.prefix or None,
            client_options={
                "allow_http": bool(endpoint_url and endpoint_url.startswith("http://")),
                "timeout": timedelta(seconds=timeout_s),
                "connect_timeout": timedelta(seconds=min(5.0, timeout_s)),
            },
            retry_config={
                "max_retries": CLIENT_RETRIES,
                "retry_timeout": timedelta(seconds=timeout_s),
                "backoff": {
                    "init_backoff": timedelta(milliseconds=100),
                    "max_backoff": timedelta(seconds=2),
                    "base": 2,
                },
            },
            **config,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> S3BlobStore:
        assert settings.blob_url is not None
        bucket, prefix = parse_blob_url(settings.blob_url)
        key, secret, token = (
            settings.aws_access_key_id, settings.aws_secret_access_key, settings.aws_session_token
        )
        return cls(
            bucket, prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.aws_region,
            access_key_id=key.reveal() if key else None,
            secret_access_key=secret.reveal() if secret else None,
            session_token=token.reveal() if token else None,
            timeout_s=settings.blob_timeout_s,
            concurrency=settings.blob_concurrency,
        )

    def __repr__(self) -> str:
        return f"S3BlobStore(s3://{self.bucket}/{self.prefix})"

    # --- BlobStore ------------------------------------------------------------------------------

    async def put(self, key: str, ext: str, data: bytes) -> str:
        path = FileBlobStore.relative_path(key, ext)  # the file store's checks and layout
        await self._put(path, bytes(data))
        return path

    async def put_many(self, items: Sequence[tuple[str, str, bytes]]) -> list[str | ChorusError]:
        """The puts side by side (bounded by the limiter); a failed one fails only its item."""
        out: list[str | ChorusError] = [ChorusError()] * len(items)

        async def one(i: int, key: str, ext: str, data: bytes) -> None:
            try:
                out[i] = await self.put(key, ext, data)
            except ChorusError as exc:
                out[i] = exc

        async with trio.open_nursery() as nursery:
            for i, (key, ext, data) in enumerate(items):
                nursery.start_soon(one, i, key, ext, data)
        return out

    async def get(self, path: str) -> bytes:
        self._check(path)
        return await self._call("GET", path, lambda: bytes(obstore.get(self._store, path).bytes()))

    async def exists(self, path: str) -> bool:
        self._check(path)

        def head() -> bool:
            try:
                obstore.head(self._store, path)
            except (NotFoundError, FileNotFoundError):  # obstore raises either
                return False
            return True

        return await self._call("HEAD", path, head)

    # --- beyond the BlobStore port (optional: routes may use them when a store has them) --------

    async def open_stream(
        self, path: str, chunk_size: int = CHUNK
    ) -> tuple[int, AsyncIterator[bytes]]:
        """(the blob's size, its bytes in chunks as they arrive): never all of it in memory at
        once. The GET is made here, so a missing blob raises ``BlobMissing`` before anything
        is sent on; the caller must consume or ``aclose`` the chunks."""
        self._check(path)
        result = await self._call("GET", path, lambda: obstore.get(self._store, path))
        size = int(result.meta["size"])
        chunks = iter(result.stream(min_chunk_size=chunk_size))

        async def read() -> AsyncIterator[bytes]:
            while True:
                chunk = await self._call("GET", path, lambda: next(chunks, None))
                if chunk is None:
                    return
                yield bytes(chunk)

        return size, read()

    async def presign(self, path: str, expires_s: float = 300.0) -> str:
        """A URL anyone holding it may GET the blob from for ``expires_s`` seconds (signed
        locally: no request is made; the URL carries a signature, never the secret key)."""
        self._check(path)
        expires = timedelta(seconds=expires_s)
        return await self._call(
            "SIGN", path, lambda: obstore.sign(self._store, "GET", path, expires)
        )

    # --- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _check(path: str) -> None:
        """The file store's lexical checks: a relative path, no ``..``, no NUL or backslash."""
        _PATHS.resolve(path)

    async def _put(self, path: str, data: bytes) -> None:
        """Up to ``PUT_ATTEMPTS`` tries with backoff, all within the one deadline."""
        delay = PUT_BACKOFF_S
        try:
            with trio.fail_after(self.timeout_s):
                for attempt in range(1, PUT_ATTEMPTS + 1):
                    try:
                        await self._call(
                            "PUT", path, lambda: obstore.put(self._store, path, data)
                        )
                        return
                    except BlobStoreError as exc:
                        if attempt == PUT_ATTEMPTS:
                            raise
                        log.warning("blob write %s failed (try %d of %d), retrying: %s", path,
                                    attempt, PUT_ATTEMPTS, exc.detail)
                    await trio.sleep(delay * (0.5 + random.random() / 2))
                    delay *= 2
        except trio.TooSlowError as exc:
            raise BlobStoreError(
                f"S3 PUT {path}: not stored within {self.timeout_s:g} s"
            ) from exc

    async def _call(self, op: str, path: str, fn: Any) -> Any:
        """``fn()`` in a worker thread within the deadline; client errors become typed ones."""
        try:
            with trio.fail_after(self.timeout_s):
                return await trio.to_thread.run_sync(
                    fn, limiter=self._limiter, abandon_on_cancel=True
                )
        except trio.TooSlowError as exc:
            raise BlobStoreError(
                f"S3 {op} {path}: no answer within {self.timeout_s:g} s"
            ) from exc
        except (NotFoundError, FileNotFoundError) as exc:
            raise BlobMissing(f"no blob at {path!r}") from exc
        except Exception as exc:  # obstore's errors (BaseError, OSError, ...)
            # not chained: the client's message may hold response bodies and request details
            raise BlobStoreError(f"S3 {op} {path}: {self._describe(exc)}") from None

    def _describe(self, exc: BaseException) -> str:
        """The error's first line, without query strings (signatures) or credentials."""
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        first = _QUERY.sub("?…", first)
        for hidden in self._hidden:
            first = first.replace(hidden, "***")
        return f"{type(exc).__name__}: {first}"
