"""Content-addressed audio files on local disk: the ``BlobStore`` adapter.

Layout: ``<root>/<key[:2]>/<key>.<ext>``; the path handed back (and stored in Postgres) is
relative to the root. A write goes to a temp file in the target directory, is flushed to disk
(``syncfs``, else fsync), then ``os.replace``d over the final name and flushed again: a reader
sees the old file or the new one, never a torn one, and a crash leaves at most a stray ``.tmp``
file (``sweep_temp`` removes old ones).

``put`` is idempotent: a file with the same bytes is left alone. A file with *different* bytes
is atomically replaced, because the key addresses the request, not the audio (espeak output is
not bit-identical between runs): the newest write is the one its caller is about to record.

All file I/O runs in worker threads, off the event loop.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import re
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

import trio

from protocols.blobs import BlobMissing, BlobStoreError
from protocols.errors import ChorusError, InvalidInput

_KEY = re.compile(r"[A-Za-z0-9_-]{2,128}")
_EXT = re.compile(r"[A-Za-z0-9]{1,16}")
_TMP_SUFFIX = ".tmp"
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


__all__ = ["BlobStoreError", "FileBlobStore"]


class FileBlobStore:
    """``BlobStore`` on a local directory (created on first write)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(os.path.abspath(root))
        self._root = str(self.root)
        self._dirs: set[str] = set()  # directories known to exist (``put_many``)
        self._tag = f"{os.getpid()}-{secrets.token_hex(4)}-"  # temp names: unique per process
        self._seq = itertools.count()

    @staticmethod
    def relative_path(key: str, ext: str) -> str:
        """The relative path ``put(key, ext, ...)`` writes to. Rejects unsafe keys/extensions."""
        if not _KEY.fullmatch(key):
            raise InvalidInput(f"invalid blob key {key!r}")
        if not _EXT.fullmatch(ext):
            raise InvalidInput(f"invalid blob extension {ext!r}")
        return f"{key[:2]}/{key}.{ext}"

    def resolve(self, path: str) -> Path:
        """Absolute path of a relative blob path; anything escaping the root is rejected.

        Purely lexical (no filesystem access), so it is safe to call on the event loop.
        """
        rel = PurePosixPath(path)
        if (
            not path
            or "\0" in path
            or "\\" in path
            or rel.is_absolute()
            or ".." in rel.parts
            or not rel.parts
        ):
            raise InvalidInput(f"invalid blob path {path!r}")
        return self.root.joinpath(*rel.parts)

    async def put(self, key: str, ext: str, data: bytes) -> str:
        rel = self.relative_path(key, ext)
        target = self.resolve(rel)
        await trio.to_thread.run_sync(self._put_sync, target, bytes(data))
        return rel

    async def put_many(self, items: Sequence[tuple[str, str, bytes]]) -> list[str | ChorusError]:
        """Several ``put``s in one worker thread: every file is written first, then one
        flush for the data, the renames, one flush for them (an fsync per file and
        directory where the OS has no ``syncfs``). A file already there is simply replaced
        (same key, same request). A bad key or a failed write fails only its own item."""
        out: list[str | ChorusError] = []
        todo: list[tuple[int, str, bytes]] = []
        for i, (key, ext, data) in enumerate(items):
            try:
                rel = self.relative_path(key, ext)  # checked: nothing outside the root
            except ChorusError as exc:
                out.append(exc)
                continue
            out.append(rel)
            todo.append((i, os.path.join(self._root, rel), bytes(data)))
        if todo:
            failed = await trio.to_thread.run_sync(
                self._put_many_sync, [(t, d) for _, t, d in todo]
            )
            for (i, target, _), exc in zip(todo, failed, strict=True):
                if exc is not None:
                    name = os.path.basename(target)
                    out[i] = BlobStoreError(f"cannot write blob {name}: {exc}")
        return out

    async def get(self, path: str) -> bytes:
        target = self.resolve(path)
        try:
            return await trio.to_thread.run_sync(target.read_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise BlobMissing(f"no blob at {path!r}") from exc
        except OSError as exc:
            raise BlobStoreError(f"cannot read blob {path!r}: {exc}") from exc

    async def exists(self, path: str) -> bool:
        target = self.resolve(path)
        return await trio.to_thread.run_sync(target.is_file)

    async def sweep_temp(self, older_than_s: float = 3600.0) -> int:
        """Delete temp files left by crashed writes; returns how many were removed."""
        return await trio.to_thread.run_sync(self._sweep_sync, older_than_s)

    # --- blocking helpers (worker threads) -------------------------------------------------

    def _put_sync(self, target: Path, data: bytes) -> None:
        try:
            if self._same_content(target, data):
                return
        except OSError as exc:
            raise BlobStoreError(f"cannot write blob {target.name}: {exc}") from exc
        (failed,) = self._put_many_sync([(str(target), data)])
        if failed is not None:
            raise BlobStoreError(f"cannot write blob {target.name}: {failed}") from failed

    def _put_many_sync(self, items: list[tuple[str, bytes]]) -> list[OSError | None]:
        """Plain ``os`` calls on strings: this thread shares the GIL with the event loop."""
        failed: list[OSError | None] = [None] * len(items)
        pending: list[tuple[int, int, str, str]] = []  # index, fd, temp path, target
        try:
            for i, (target, data) in enumerate(items):
                try:
                    directory = os.path.dirname(target)
                    if directory not in self._dirs:
                        os.makedirs(directory, exist_ok=True)
                        self._dirs.add(directory)
                    tmp = f"{target}.{self._tag}{next(self._seq)}{_TMP_SUFFIX}"
                    tmp = os.path.join(directory, "." + os.path.basename(tmp))
                    try:
                        fd = os.open(tmp, _CREATE, 0o600)
                    except FileNotFoundError:  # removed behind our back: make it again
                        os.makedirs(directory, exist_ok=True)
                        fd = os.open(tmp, _CREATE, 0o600)
                    pending.append((i, fd, tmp, target))
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                except OSError as exc:
                    failed[i] = exc
            written = [(i, fd, tmp, target) for i, fd, tmp, target in pending
                       if failed[i] is None]
            # the data first (one filesystem-wide flush where the OS has one), then the renames
            if written and not _syncfs(written[0][1]):
                for i, fd, _, _ in written:
                    try:
                        os.fsync(fd)
                    except OSError as exc:
                        failed[i] = exc
            dirs: dict[str, int] = {}  # directory -> an fd of a file renamed into it
            for i, fd, tmp, target in written:
                if failed[i] is not None:
                    continue
                try:
                    os.replace(tmp, target)
                    dirs.setdefault(os.path.dirname(target), fd)
                except OSError as exc:
                    failed[i] = exc
            if dirs and not _syncfs(next(iter(dirs.values()))):
                for directory in dirs:
                    _fsync_dir(Path(directory))
        finally:
            for i, fd, tmp, _ in pending:
                os.close(fd)
                if failed[i] is not None:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
        return failed

    @staticmethod
    def _same_content(target: Path, data: bytes) -> bool:
        try:
            if target.stat().st_size != len(data):
                return False
            return target.read_bytes() == data
        except FileNotFoundError:
            return False

    def _sweep_sync(self, older_than_s: float) -> int:
        if not self.root.is_dir():
            return 0
        cutoff = time.time() - older_than_s
        removed = 0
        for tmp in self.root.glob(f"*/.*{_TMP_SUFFIX}"):
            with contextlib.suppress(OSError):
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
                    removed += 1
        return removed


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not Linux
        return None


_SYNCFS = _load_syncfs()


def _syncfs(fd: int) -> bool:
    """Flush the whole filesystem holding ``fd`` (Linux ``syncfs``: one device flush for many
    files, where an fsync per file costs one each). False where it is not available or
    failed (the caller fsyncs file by file instead)."""
    return _SYNCFS is not None and _SYNCFS(fd) == 0


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
