"""protocols/blobs/files.py: content-addressed, atomic, idempotent file storage."""

from __future__ import annotations

import hashlib
import os

import pytest
import trio

from protocols.blobs.files import BlobStoreError, FileBlobStore
from protocols.errors import InvalidInput, NotFound
from protocols.ports import BlobStore

KEY = hashlib.sha256(b"request").hexdigest()


@pytest.fixture
def store(tmp_path) -> FileBlobStore:
    return FileBlobStore(tmp_path / "blobs")


async def test_put_get_exists(store, tmp_path):
    s: BlobStore = store
    with trio.fail_after(5):
        assert not await s.exists(f"{KEY[:2]}/{KEY}.mp3")
        path = await s.put(KEY, "mp3", b"ID3 audio")
        assert path == f"{KEY[:2]}/{KEY}.mp3"
        assert (tmp_path / "blobs" / KEY[:2] / f"{KEY}.mp3").read_bytes() == b"ID3 audio"
        assert await s.get(path) == b"ID3 audio"
        assert await s.exists(path)
        assert not await s.exists(f"{KEY[:2]}/{KEY}.wav")


async def test_put_is_idempotent_and_leaves_same_content_alone(store):
    with trio.fail_after(5):
        path = await store.put(KEY, "mp3", b"same")
        full = store.resolve(path)
        os.utime(full, (1_000_000, 1_000_000))
        assert await store.put(KEY, "mp3", b"same") == path
        assert full.stat().st_mtime == 1_000_000  # untouched
        assert await store.get(path) == b"same"


async def test_put_with_different_content_replaces_atomically(store):
    with trio.fail_after(5):
        path = await store.put(KEY, "mp3", b"first rendering")
        inode = store.resolve(path).stat().st_ino
        assert await store.put(KEY, "mp3", b"second") == path
        assert await store.get(path) == b"second"
        assert store.resolve(path).stat().st_ino != inode  # a new file renamed over the old
    assert [p.name for p in store.resolve(path).parent.iterdir()] == [f"{KEY}.mp3"]


async def test_concurrent_puts_leave_one_whole_file(store):
    payloads = [bytes([i]) * 100_000 for i in range(8)]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for data in payloads:
                nursery.start_soon(store.put, KEY, "wav", data)
        data = await store.get(f"{KEY[:2]}/{KEY}.wav")
    assert data in payloads  # one writer won, whole; nothing torn or interleaved
    assert len(list(store.resolve(f"{KEY[:2]}/{KEY}.wav").parent.iterdir())) == 1


async def test_get_missing_is_not_found(store):
    with trio.fail_after(5):
        with pytest.raises(NotFound) as info:
            await store.get(f"{KEY[:2]}/{KEY}.mp3")
        assert info.value.status == 404
        with pytest.raises(NotFound):
            await store.get("ab")  # a directory-ish name that does not exist


@pytest.mark.parametrize(
    "path",
    [
        "../secret",
        "ab/../../etc/passwd",
        "/etc/passwd",
        "ab\\..\\x",
        "",
        ".",
        "ab/\0x",
    ],
)
async def test_path_traversal_rejected(store, path):
    with trio.fail_after(5):
        with pytest.raises(InvalidInput):
            await store.get(path)
        with pytest.raises(InvalidInput):
            await store.exists(path)


@pytest.mark.parametrize(
    ("key", "ext"), [("../x", "mp3"), ("a/b", "mp3"), ("k", "mp3"), (KEY, "m/p3"), (KEY, "")]
)
async def test_bad_keys_rejected(store, key, ext):
    with trio.fail_after(5):
        with pytest.raises(InvalidInput):
            await store.put(key, ext, b"x")


async def test_sweep_removes_only_old_temp_files(store):
    with trio.fail_after(5):
        path = await store.put(KEY, "mp3", b"audio")
        folder = store.resolve(path).parent
        old = folder / f".{KEY}.mp3.abc.tmp"
        new = folder / f".{KEY}.mp3.def.tmp"
        old.write_bytes(b"partial")
        new.write_bytes(b"partial")
        os.utime(old, (1_000_000, 1_000_000))
        assert await store.sweep_temp(older_than_s=60) == 1
    assert not old.exists() and new.exists()
    assert store.resolve(path).exists()


async def test_put_many_writes_each_file_whole_and_fails_only_the_bad_ones(store, tmp_path):
    blocked = "zz" + "0" * 30  # its directory is taken by a plain file: that write fails
    (tmp_path / "blobs").mkdir(exist_ok=True)
    (tmp_path / "blobs" / "zz").write_bytes(b"not a directory")
    out = await store.put_many([
        ("ab" + "1" * 30, "mp3", b"first"),
        ("../x", "mp3", b"bad key"),
        (blocked, "wav", b"nowhere to go"),
        ("cd" + "2" * 30, "wav", b"second"),
        ("ab" + "1" * 30, "mp3", b"first, again"),  # the same key twice: the last one wins
    ])
    assert out[0] == out[4] == f"ab/{'ab' + '1' * 30}.mp3"
    assert isinstance(out[1], InvalidInput) and isinstance(out[2], BlobStoreError)
    assert await store.get(out[0]) == b"first, again"
    assert await store.get(out[3]) == b"second"
    leftovers = [p.name for p in (tmp_path / "blobs").rglob("*.tmp")]
    assert leftovers == []  # no temp file left behind, not even for the failed write
