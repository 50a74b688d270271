"""protocols/blobs/s3.py against a real S3-compatible server on 127.0.0.1 (moto over HTTP): the
BlobStore contract the file store keeps (layout, idempotent puts, put_many failing only its own
item, a missing blob), retries of 5xx answers, streamed reads, pre-signed URLs, typed errors
that never show a credential, and the choice of store by settings."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator

import httpx
import pytest
import trio

from protocols.blobs import BlobMissing, BlobStoreError
from protocols.blobs.files import FileBlobStore
from protocols.blobs.s3 import PUT_ATTEMPTS, S3BlobStore
from protocols.errors import ConfigError, InvalidInput, NotFound
from protocols.ports import BlobStore
from protocols.settings import Settings
from run import blob_store
from tests.support.procs import free_port
from tests.support.s3server import ACCESS_KEY, REGION, SECRET_KEY, S3Server, s3_env, s3_server

KEY = hashlib.sha256(b"request").hexdigest()
PATH = f"{KEY[:2]}/{KEY}.mp3"
LIMIT_S = 30


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


def make_store(s3: S3Server, bucket: str, prefix: str = "audio", **kw) -> S3BlobStore:
    return S3BlobStore(
        bucket, prefix, endpoint_url=s3.url, region=REGION, access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY, **kw,
    )


@pytest.fixture
def store(s3: S3Server) -> S3BlobStore:
    return make_store(s3, s3.new_bucket())


def objects(s3: S3Server, bucket: str) -> dict[str, bytes]:
    """Every object in the bucket, read by another S3 client (boto3, which moto brings)."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3.url, region_name=REGION,
                          aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            for o in listed}


async def test_put_get_exists_with_the_file_store_layout_under_the_prefix(s3, store):
    s: BlobStore = store
    with trio.fail_after(LIMIT_S):
        assert not await s.exists(PATH)
        path = await s.put(KEY, "mp3", b"ID3 audio")
        assert path == PATH == FileBlobStore.relative_path(KEY, "mp3")
        assert await s.get(path) == b"ID3 audio"
        assert await s.exists(path)
        assert not await s.exists(f"{KEY[:2]}/{KEY}.wav")
    assert objects(s3, store.bucket) == {f"audio/{PATH}": b"ID3 audio"}


async def test_a_store_on_the_same_bucket_and_prefix_sees_the_blob_another_prefix_does_not(
    s3, store
):
    with trio.fail_after(LIMIT_S):
        path = await store.put(KEY, "mp3", b"shared")
        other_host = make_store(s3, store.bucket)  # another process, same settings
        assert await other_host.get(path) == b"shared"
        elsewhere = make_store(s3, store.bucket, prefix="other")
        assert not await elsewhere.exists(path)


async def test_put_is_idempotent_and_the_newest_write_wins(s3, store):
    with trio.fail_after(LIMIT_S):
        path = await store.put(KEY, "mp3", b"same")
        assert await store.put(KEY, "mp3", b"same") == path
        assert await store.get(path) == b"same"
        assert await store.put(KEY, "mp3", b"second rendering") == path
        assert await store.get(path) == b"second rendering"
    assert list(objects(s3, store.bucket)) == [f"audio/{PATH}"]


async def test_put_many_stores_each_and_fails_only_the_bad_ones(store):
    keys = [hashlib.sha256(bytes([i])).hexdigest() for i in range(5)]
    items = [(k, "mp3", bytes([i]) * 1000) for i, k in enumerate(keys)]
    items.insert(2, ("../escape", "mp3", b"x"))
    with trio.fail_after(LIMIT_S):
        out = await store.put_many(items)
        assert isinstance(out[2], InvalidInput)
        good = [p for i, p in enumerate(out) if i != 2]
        assert good == [f"{k[:2]}/{k}.mp3" for k in keys]
        for i, path in enumerate(good):
            assert await store.get(path) == bytes([i]) * 1000  # type: ignore[arg-type]


async def test_a_missing_blob_is_a_not_found_and_a_file_not_found(store):
    with trio.fail_after(LIMIT_S):
        with pytest.raises(BlobMissing) as caught:
            await store.get(PATH)
        # the audio route and the storybook outputs catch FileNotFoundError; the edge NotFound
        assert isinstance(caught.value, FileNotFoundError)
        assert isinstance(caught.value, NotFound)
        with pytest.raises(FileNotFoundError):
            await store.open_stream(PATH)


async def test_unsafe_paths_are_refused_before_any_request(s3, store):
    before = len(s3.requests)
    with trio.fail_after(LIMIT_S):
        for bad in ("../x.mp3", "/abs.mp3", "a\\b.mp3", "", "a\0.mp3"):
            with pytest.raises(InvalidInput):
                await store.get(bad)
            with pytest.raises(InvalidInput):
                await store.exists(bad)
    assert len(s3.requests) == before


async def test_5xx_answers_to_a_write_are_retried(s3, store):
    failed, stored = s3.count("PUT", 503), s3.count("PUT", 200)
    s3.fail_next("PUT", 2)
    with trio.fail_after(LIMIT_S):
        path = await store.put(KEY, "mp3", b"after a busy moment")
        assert await store.get(path) == b"after a busy moment"
    assert s3.count("PUT", 503) - failed == 2 and s3.count("PUT", 200) - stored == 1


async def test_5xx_answers_to_a_read_are_retried(s3, store):
    failed = s3.count("GET", 503)
    with trio.fail_after(LIMIT_S):
        path = await store.put(KEY, "mp3", b"read me")
        s3.fail_next("GET", 2)
        assert await store.get(path) == b"read me"
    assert s3.count("GET", 503) - failed == 2


async def test_a_write_that_keeps_failing_is_a_retryable_error_without_secrets(s3, store):
    failed = s3.count("PUT", 503)
    s3.fail_next("PUT", 1000)
    try:
        with trio.fail_after(LIMIT_S):
            with pytest.raises(BlobStoreError) as caught:
                await store.put(KEY, "mp3", b"never stored")
            out = await store.put_many([(KEY, "mp3", b"never stored")])
    finally:
        s3.fail_next("PUT", 0)
    exc = caught.value
    assert exc.retryable and exc.status == 503 and exc.code == "blob_store_error"
    assert PATH in exc.detail and "503" in exc.detail
    assert exc.__cause__ is None  # the client's own message (bodies, requests) is not chained
    for text in (str(exc), repr(exc), exc.detail):
        assert SECRET_KEY not in text and ACCESS_KEY not in text
    # each try was retried by the client as well
    assert s3.count("PUT", 503) - failed > 2 * PUT_ATTEMPTS
    assert isinstance(out[0], BlobStoreError)
    assert not await store.exists(PATH)


async def test_an_unreachable_store_fails_in_time_with_a_typed_error():
    dead = S3BlobStore(
        "bucket", "audio", endpoint_url=f"http://127.0.0.1:{free_port()}", region=REGION,
        access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY, timeout_s=2.0,
    )
    with trio.fail_after(LIMIT_S):
        with pytest.raises(BlobStoreError) as caught:
            await dead.get(PATH)
        with pytest.raises(BlobStoreError):
            await dead.exists(PATH)
    assert SECRET_KEY not in str(caught.value) and ACCESS_KEY not in str(caught.value)


async def test_a_store_that_never_answers_fails_a_write_within_its_deadline():
    with socket.socket() as silent:  # accepts connections (the kernel does), answers nothing
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        dead = S3BlobStore(
            "bucket", "audio", endpoint_url=f"http://127.0.0.1:{silent.getsockname()[1]}",
            region=REGION, access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY,
            timeout_s=1.0,
        )
        with trio.fail_after(LIMIT_S):  # the store's own deadline ends it long before
            with pytest.raises(BlobStoreError) as caught:
                await dead.put(KEY, "mp3", b"never answered")
            (out,) = await dead.put_many([(KEY, "mp3", b"never answered")])
    assert caught.value.retryable and PATH in caught.value.detail
    assert isinstance(out, BlobStoreError)


async def test_reads_can_be_streamed_in_chunks(store):
    data = bytes(range(256)) * 4096  # 1 MiB
    with trio.fail_after(LIMIT_S):
        path = await store.put(KEY, "wav", data)
        size, stream = await store.open_stream(path, chunk_size=64 * 1024)
        chunks = [chunk async for chunk in stream]
    assert size == len(data) and b"".join(chunks) == data
    assert len(chunks) > 1 and max(len(c) for c in chunks) < len(data)


async def test_a_presigned_url_reads_the_blob_without_credentials(store):
    with trio.fail_after(LIMIT_S):
        path = await store.put(KEY, "mp3", b"signed audio")
        url = await store.presign(path, expires_s=60)
        async with httpx.AsyncClient(timeout=10) as http:
            r = await http.get(url)
            unsigned = await http.get(url.split("?", 1)[0])
    assert r.status_code == 200 and r.content == b"signed audio"
    assert unsigned.status_code == 403  # the bucket is private: the signature opened it
    assert "X-Amz-Signature=" in url and SECRET_KEY not in url


def test_settings_choose_the_store_and_hide_the_credentials(s3, tmp_path):
    env = s3_env(s3, "my-bucket", "chorus/audio") | {"CHORUS_DATA_DIR": str(tmp_path)}
    settings = Settings.from_env(env)
    chosen = blob_store(settings)
    assert isinstance(chosen, S3BlobStore)
    assert (chosen.bucket, chosen.prefix) == ("my-bucket", "chorus/audio")
    assert SECRET_KEY not in repr(settings) and SECRET_KEY not in repr(chosen)
    assert isinstance(blob_store(Settings.from_env({"CHORUS_DATA_DIR": str(tmp_path)})),
                      FileBlobStore)
    for bad in ({"CHORUS_BLOB_URL": "https://bucket/x"},
                {"CHORUS_BLOB_URL": "s3://b", "AWS_ACCESS_KEY_ID": "only-the-id"},
                {"CHORUS_BLOB_URL": "s3://b", "CHORUS_BLOB_TIMEOUT_S": "0"}):
        with pytest.raises(ConfigError):
            Settings.from_env(bad)
