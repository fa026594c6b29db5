"""S3BlobStore against a real SeaweedFS: the behaviours of the local backend that apply to S3,
the multipart path for large blobs, and errors translated at the edge."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cryptmail.config import load_config
from cryptmail.errors import BlobMissing, ConfigError, StoreUnavailable
from cryptmail.store import new_blob_id
from cryptmail.store.blobs import S3BlobStore, _s3, open_blob_store
from integration.servers._fixtures import start_or_skip
from integration.servers.seaweedfs import S3Credentials, SeaweedFS

from .blob_contract import (
    committed_blobs,
    missing_blob_raises_blob_missing,
    read_heads_gives_prefixes_and_leaves_out_missing_blobs,
    small_blob_commits_and_abort_leaves_nothing,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def seaweedfs() -> Iterator[S3Credentials]:
    server = SeaweedFS()
    start_or_skip(server)
    try:
        yield server.credentials
    finally:
        server.stop()


@pytest.fixture
def bucket(seaweedfs: S3Credentials) -> str:
    name = f"blobs-{secrets.token_hex(6)}"
    seaweedfs.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def blobs(seaweedfs: S3Credentials, bucket: str) -> S3BlobStore:
    return S3BlobStore(
        seaweedfs.endpoint,
        bucket,
        access_key=seaweedfs.access_key,
        secret_key=seaweedfs.secret_key,
    )


def _keys(creds: S3Credentials, bucket: str) -> list[str]:
    answer = creds.client().list_objects_v2(Bucket=bucket)
    return [str(entry["Key"]) for entry in answer.get("Contents", [])]


def _uploads(creds: S3Credentials, bucket: str) -> list[dict[str, Any]]:
    uploads: list[dict[str, Any]] = (
        creds.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    )
    return uploads


async def test_nothing_is_visible_before_commit(
    blobs: S3BlobStore, seaweedfs: S3Credentials, bucket: str
) -> None:
    blob_id = new_blob_id()
    writer = await blobs.create(blob_id)
    await writer.write(b"hello ")
    big = b"w" * 300_000
    await writer.write(big)
    assert _keys(seaweedfs, bucket) == []
    with pytest.raises(BlobMissing):
        await blobs.read(blob_id)
    assert await writer.commit() == 6 + len(big)
    assert _keys(seaweedfs, bucket) == [S3BlobStore.key_of(blob_id)]
    assert await blobs.read(blob_id) == b"hello " + big
    assert await blobs.read(blob_id, 6, 3) == b"www"
    assert await blobs.read(blob_id, 6 + len(big) - 2) == b"ww"
    assert await blobs.read(blob_id, 10_000_000) == b""  # past the end
    assert await blobs.read(blob_id, 3, 0) == b""
    assert await blobs.size(blob_id) == 6 + len(big)
    assert abs(await blobs.modified_at(blob_id) - time.time()) < 300


async def test_an_empty_blob_round_trips(blobs: S3BlobStore) -> None:
    blob_id = new_blob_id()
    writer = await blobs.create(blob_id)
    assert await writer.commit() == 0
    assert await blobs.read(blob_id) == b""
    assert await blobs.size(blob_id) == 0
    assert [piece async for piece in blobs.stream(blob_id)] == []


async def test_a_small_blob_is_one_put_and_an_abort_leaves_nothing(
    blobs: S3BlobStore, seaweedfs: S3Credentials, bucket: str
) -> None:
    kept = await small_blob_commits_and_abort_leaves_nothing(blobs)
    assert _uploads(seaweedfs, bucket) == []
    assert _keys(seaweedfs, bucket) == [S3BlobStore.key_of(kept)]


async def test_a_large_blob_is_a_multipart_upload_streamed_back_byte_exact(
    blobs: S3BlobStore, seaweedfs: S3Credentials, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_call = S3BlobStore._call

    async def spy(self: S3BlobStore, doing: str, blob_id: Any, func: Any, **kwargs: Any) -> Any:
        calls.append(getattr(func, "__name__", "?"))
        if "Body" in kwargs:
            # Memory stays bounded: no request carries more than one part.
            assert len(kwargs["Body"]) <= _s3.PART_SIZE
        return await real_call(self, doing, blob_id, func, **kwargs)

    monkeypatch.setattr(S3BlobStore, "_call", spy)
    blob_id = new_blob_id()
    size = 20 * 1024 * 1024 + 12_345
    digest = hashlib.sha256()
    writer = await blobs.create(blob_id)
    written = 0
    piece = 1_000_003
    while written < size:
        data = os.urandom(min(piece, size - written))
        digest.update(data)
        await writer.write(data)
        written += len(data)
        # Nothing shows before commit, not even while parts are uploaded.
        if written > _s3.PART_SIZE and written - len(data) <= _s3.PART_SIZE:
            assert _keys(seaweedfs, bucket) == []
            assert len(_uploads(seaweedfs, bucket)) == 1
    assert await writer.commit() == size
    assert calls.count("create_multipart_upload") == 1
    assert calls.count("upload_part") == 3  # 8 MiB, 8 MiB, the rest
    assert calls.count("complete_multipart_upload") == 1
    assert "put_object" not in calls
    assert _uploads(seaweedfs, bucket) == []
    assert await blobs.size(blob_id) == size

    calls.clear()
    back = hashlib.sha256()
    pieces = 0
    async for chunk in blobs.stream(blob_id, 0, 65536):
        assert 0 < len(chunk) <= 65536
        back.update(chunk)
        pieces += 1
    assert back.digest() == digest.digest()
    assert pieces == -(-size // 65536)
    # One ranged GET per megabyte: no connection stays open while a slow reader dawdles.
    assert calls == ["_get"] * -(-size // _s3._STREAM_READ)
    tail = [chunk async for chunk in blobs.stream(blob_id, size - 10, 4)]
    assert [len(c) for c in tail] == [4, 4, 2]
    assert b"".join(tail) == await blobs.read(blob_id, size - 10)


async def test_aborting_a_multipart_blob_aborts_the_upload(
    blobs: S3BlobStore, seaweedfs: S3Credentials, bucket: str
) -> None:
    blob_id = new_blob_id()
    writer = await blobs.create(blob_id)
    await writer.write(os.urandom(_s3.PART_SIZE + 1000))
    assert len(_uploads(seaweedfs, bucket)) == 1
    await writer.abort()
    assert _uploads(seaweedfs, bucket) == []
    assert _keys(seaweedfs, bucket) == []
    assert [b async for b in blobs.list_ids()] == []


async def test_sweep_temp_aborts_only_stale_uploads(
    blobs: S3BlobStore, seaweedfs: S3Credentials, bucket: str
) -> None:
    blob_id = new_blob_id()
    seaweedfs.client().create_multipart_upload(Bucket=bucket, Key=S3BlobStore.key_of(blob_id))
    assert await blobs.sweep_temp() == 0  # young: a writer may still be at it
    assert len(_uploads(seaweedfs, bucket)) == 1
    assert await blobs.sweep_temp(min_age_s=-60) == 1
    assert _uploads(seaweedfs, bucket) == []


async def test_delete_removes_and_tolerates_absence(blobs: S3BlobStore) -> None:
    blob_id = new_blob_id()
    writer = await blobs.create(blob_id)
    await writer.write(b"secret bytes" * 1000)
    await writer.commit()
    await blobs.delete(blob_id)
    with pytest.raises(BlobMissing):
        await blobs.read(blob_id)
    await blobs.delete(blob_id)  # absent: no error


async def test_list_ids_pages_and_skips_foreign_keys(
    blobs: S3BlobStore, seaweedfs: S3Credentials, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await committed_blobs(blobs, 5)
    client = seaweedfs.client()
    client.put_object(Bucket=bucket, Key="README", Body=b"not a blob")
    client.put_object(Bucket=bucket, Key=f"zz/{ids[0].hex()}", Body=b"wrong fan-out")
    pending = await blobs.create(new_blob_id())
    await pending.write(b"in flight")
    real = blobs._client.list_objects_v2
    pages: list[int] = []

    def small_pages(**kwargs: Any) -> Any:
        answer = real(**{**kwargs, "MaxKeys": 2})
        pages.append(len(answer.get("Contents", [])))
        return answer

    monkeypatch.setattr(blobs._client, "list_objects_v2", small_pages)
    assert sorted([b async for b in blobs.list_ids()]) == sorted(ids)
    assert len(pages) == 4  # 7 keys, 2 a page
    await pending.abort()


async def test_missing_blob_raises_blob_missing(blobs: S3BlobStore) -> None:
    await missing_blob_raises_blob_missing(blobs)


async def test_read_heads_gives_prefixes_and_leaves_out_missing_blobs(blobs: S3BlobStore) -> None:
    await read_heads_gives_prefixes_and_leaves_out_missing_blobs(blobs)


async def test_wrong_credentials_are_a_clear_store_unavailable(
    seaweedfs: S3Credentials, bucket: str
) -> None:
    wrong_secret = "not-the-secret-" + secrets.token_hex(8)
    wrong = S3BlobStore(
        seaweedfs.endpoint, bucket, access_key=seaweedfs.access_key, secret_key=wrong_secret
    )
    blob_id = new_blob_id()
    writer = await wrong.create(blob_id)
    await writer.write(b"x")
    with pytest.raises(StoreUnavailable, match="s3_secret_key_file") as caught:
        await writer.commit()
    message = str(caught.value)
    assert "refused the credentials" in message
    assert bucket in message and seaweedfs.endpoint in message
    assert wrong_secret not in message and seaweedfs.access_key not in message
    with pytest.raises(StoreUnavailable, match="refused the credentials"):
        await wrong.read(blob_id)
    with pytest.raises(StoreUnavailable, match="refused the credentials"):
        [b async for b in wrong.list_ids()]


async def test_an_unknown_bucket_and_a_dead_endpoint_are_store_unavailable(
    seaweedfs: S3Credentials,
) -> None:
    no_bucket = S3BlobStore(
        seaweedfs.endpoint,
        "no-such-bucket",
        access_key=seaweedfs.access_key,
        secret_key=seaweedfs.secret_key,
    )
    writer = await no_bucket.create(new_blob_id())
    await writer.write(b"x")
    with pytest.raises(StoreUnavailable, match="bucket does not exist"):
        await writer.commit()
    dead = S3BlobStore(
        "http://127.0.0.1:9", "blobs", access_key="a", secret_key="b"
    )  # discard port: nothing listens
    with pytest.raises(StoreUnavailable, match="blobs.s3_endpoint"):
        await dead.size(new_blob_id())


def _s3_config(tmp_path: Path, creds: S3Credentials, bucket: str, secret: str) -> Path:
    access_file, secret_file = tmp_path / "s3-access", tmp_path / "s3-secret"
    access_file.write_text(creds.access_key + "\n")
    secret_file.write_text(secret + "\n")
    path = tmp_path / "cryptmail.toml"
    path.write_text(
        f"data_dir = '{tmp_path / 'data'}'\n"
        "[blobs]\n"
        "backend = 's3'\n"
        f"s3_endpoint = '{creds.endpoint}'\n"
        f"s3_bucket = '{bucket}'\n"
        f"s3_access_key_file = '{access_file}'\n"
        f"s3_secret_key_file = '{secret_file}'\n"
    )
    return path


async def test_open_blob_store_reads_the_key_files(
    tmp_path: Path, seaweedfs: S3Credentials, bucket: str
) -> None:
    config = load_config(_s3_config(tmp_path, seaweedfs, bucket, seaweedfs.secret_key))
    blobs = open_blob_store(config)
    assert isinstance(blobs, S3BlobStore)
    blob_id = new_blob_id()
    writer = await blobs.create(blob_id)
    await writer.write(b"via config")
    await writer.commit()
    assert await blobs.read(blob_id) == b"via config"
    (tmp_path / "s3-secret").write_text("")
    with pytest.raises(ConfigError, match="s3_secret_key_file"):
        open_blob_store(config)
    (tmp_path / "s3-secret").unlink()
    with pytest.raises(ConfigError, match="cannot be read"):
        open_blob_store(config)
