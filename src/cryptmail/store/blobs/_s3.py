"""Blobs as objects in an S3-compatible bucket (MinIO, Garage, Ceph RGW, SeaweedFS, AWS).

Layout: key `<2 hex>/<32 hex>`, as the local backend names its files. A blob becomes
visible in one step: a blob under `PART_SIZE` is one PUT at commit; a larger one is a
multipart upload of `PART_SIZE` parts, completed at commit, so memory stays bounded by
about one part per writer. An upload that is never completed (a crash) is invisible and
`sweep_temp` aborts it. Objects hold exactly the bytes the store hands over, which are
already sealed; the S3 side adds nothing and is trusted with nothing.

Every boto3 call runs through `run_blocking`. Its exceptions are translated here, at the
edge: an absent key is `BlobMissing`, anything else `StoreUnavailable` with a message
that names the operation, the blob, the endpoint and bucket, and what to check.

boto3 and botocore are imported where they are used: they take about 0.3 s to import,
which every CLI command would pay for a backend it may not use.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from cryptmail.concurrency import run_blocking
from cryptmail.errors import BlobMissing, ConfigError, StoreUnavailable
from cryptmail.store._ids import BlobId
from cryptmail.store.blobs._timed import timed

log = logging.getLogger(__name__)

PART_SIZE = 8 * 1024 * 1024
"""Buffer limit of a writer and the size of each multipart part (S3's minimum is 5 MiB)."""
_STREAM_READ = 1024 * 1024
"""Bytes fetched per ranged GET while streaming (then cut into the caller's chunks)."""
_PARALLEL_READS = 8
"""Ranged GETs one `read_heads` call runs at once (of the client's connection pool)."""
_ABSENT = frozenset({"NoSuchKey", "404", "NotFound"})
_CREDENTIALS = frozenset(
    {"403", "AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "Forbidden"}
)

R = TypeVar("R")


def read_key_file(path: str, what: str) -> str:
    """The one line of a key file; ConfigError naming the key (never its content)."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"blobs.{what} = {path!r} cannot be read ({type(exc).__name__}); "
            "it must name a file holding the key on one line"
        ) from exc
    if not text or "\n" in text:
        raise ConfigError(f"blobs.{what} = {path!r} must hold the key on one line")
    return text


class S3BlobWriter:
    """Buffers up to `PART_SIZE`; past that, a multipart upload with parts of that size."""

    def __init__(self, store: S3BlobStore, blob_id: BlobId) -> None:
        self._store = store
        self._blob_id = blob_id
        self._key = store.key_of(blob_id)
        self._pending = bytearray()
        self._size = 0
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    async def write(self, data: bytes) -> None:
        self._pending += data
        self._size += len(data)
        while len(self._pending) >= PART_SIZE:
            part = bytes(self._pending[:PART_SIZE])
            del self._pending[:PART_SIZE]
            try:
                await self._upload_part(part)
            except (StoreUnavailable, BlobMissing):
                await self.abort()
                raise

    async def _upload_part(self, part: bytes) -> None:
        client, bucket = self._store._client, self._store.bucket
        if self._upload_id is None:
            created = await self._store._call(
                "starting the upload of",
                self._blob_id,
                client.create_multipart_upload,
                Bucket=bucket,
                Key=self._key,
            )
            self._upload_id = str(created["UploadId"])
        number = len(self._parts) + 1
        answer = await self._store._call(
            "uploading a part of",
            self._blob_id,
            client.upload_part,
            Bucket=bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=part,
        )
        self._parts.append({"ETag": answer["ETag"], "PartNumber": number})

    @timed("write")
    async def commit(self) -> int:
        client, bucket = self._store._client, self._store.bucket
        try:
            if self._upload_id is None:
                await self._store._call(
                    "writing",
                    self._blob_id,
                    client.put_object,
                    Bucket=bucket,
                    Key=self._key,
                    Body=bytes(self._pending),
                )
            else:
                if self._pending or not self._parts:
                    await self._upload_part(bytes(self._pending))
                await self._store._call(
                    "completing the upload of",
                    self._blob_id,
                    client.complete_multipart_upload,
                    Bucket=bucket,
                    Key=self._key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                )
                self._upload_id = None
        except (StoreUnavailable, BlobMissing):
            await self.abort()
            raise
        self._pending = bytearray()
        return self._size

    async def abort(self) -> None:
        self._pending = bytearray()
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is None:
            return
        try:
            await self._store._call(
                "aborting the upload of",
                self._blob_id,
                self._store._client.abort_multipart_upload,
                Bucket=self._store.bucket,
                Key=self._key,
                UploadId=upload_id,
            )
        except (StoreUnavailable, BlobMissing) as exc:
            # The sweep aborts it later; the blob was never visible either way.
            log.warning("could not abort the upload of blob %s: %s", self._blob_id.hex()[:8], exc)


class S3BlobStore:
    """Blob backend on an S3-compatible bucket; the bucket must exist."""

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        *,
        access_key: str,
        secret_key: str,
        region: str = "us-east-1",
        max_connections: int = 32,
    ) -> None:
        self.endpoint = endpoint
        self.bucket = bucket
        import boto3
        from botocore.config import Config as BotoConfig

        # The keys go to boto3 only; nothing here keeps or logs them.
        self._client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint,
            region_name=region,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=BotoConfig(
                s3={"addressing_style": "path"},
                connect_timeout=10,
                read_timeout=60,
                retries={"max_attempts": 3, "mode": "standard"},
                max_pool_connections=max_connections,
                # Checksums only where S3 demands them: several S3-compatible servers
                # refuse the newer default ones, and blobs carry their own AEAD tags.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    @classmethod
    def from_key_files(
        cls, endpoint: str, bucket: str, access_key_file: str, secret_key_file: str, region: str
    ) -> S3BlobStore:
        return cls(
            endpoint,
            bucket,
            access_key=read_key_file(access_key_file, "s3_access_key_file"),
            secret_key=read_key_file(secret_key_file, "s3_secret_key_file"),
            region=region,
        )

    @staticmethod
    def key_of(blob_id: BlobId) -> str:
        hexid = blob_id.hex()
        return f"{hexid[:2]}/{hexid}"

    def _where(self) -> str:
        return f"bucket {self.bucket!r} at {self.endpoint}"

    def _missing(self, blob_id: BlobId) -> BlobMissing:
        return BlobMissing(
            f"blob {blob_id.hex()} is missing from {self._where()}; restore it from backup, "
            "then run `cryptmail store check`"
        )

    def _unavailable(self, doing: str, blob_id: BlobId | None, exc: Exception) -> StoreUnavailable:
        from botocore.exceptions import ClientError

        what = f"{doing} blob {blob_id.hex()[:8]}" if blob_id is not None else doing
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "?"))
            if code in _CREDENTIALS:
                advice = (
                    "the S3 server refused the credentials; check blobs.s3_access_key_file, "
                    "blobs.s3_secret_key_file and the key's rights on the bucket"
                )
            elif code == "NoSuchBucket":
                advice = "the bucket does not exist; create it, or fix blobs.s3_bucket"
            else:
                advice = "the S3 server answered with an error; see its log"
            cause = f"{code} ({error.get('Message', 'no message')})"
        else:
            cause = type(exc).__name__
            advice = "is the S3 server up and blobs.s3_endpoint right? Retry later"
        return StoreUnavailable(f"S3: {what} in {self._where()} failed: {cause}; {advice}")

    async def _call(
        self, doing: str, blob_id: BlobId | None, func: Callable[..., R], **kwargs: Any
    ) -> R:
        """Run one boto3 call in a worker thread, translating its errors."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return await run_blocking(func, **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _ABSENT and blob_id is not None:
                raise self._missing(blob_id) from exc
            raise self._unavailable(doing, blob_id, exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable(doing, blob_id, exc) from exc

    async def create(self, blob_id: BlobId) -> S3BlobWriter:
        return S3BlobWriter(self, blob_id)

    async def ready(self) -> None:
        await self._call("checking the bucket", None, self._client.head_bucket, Bucket=self.bucket)

    @timed("read")
    async def read(self, blob_id: BlobId, offset: int = 0, length: int = -1) -> bytes:
        if length == 0:
            await self.size(blob_id)  # still BlobMissing for an absent blob
            return b""

        from botocore.exceptions import ClientError

        def _get() -> bytes:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key_of(blob_id)}
            if offset > 0 or length > 0:
                end = "" if length < 0 else str(offset + length - 1)
                kwargs["Range"] = f"bytes={offset}-{end}"
            try:
                answer = self._client.get_object(**kwargs)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                    return b""  # past the end: the blob exists, there is nothing there
                raise
            body = answer["Body"]
            try:
                return bytes(body.read())
            finally:
                body.close()

        return await self._call("reading", blob_id, _get)

    @timed("read")
    async def read_heads(self, blob_ids: Sequence[BlobId], length: int) -> dict[BlobId, bytes]:
        # Ranged GETs side by side, a few at a time: S3 has no multi-object read.
        limit = asyncio.Semaphore(_PARALLEL_READS)

        async def one(blob_id: BlobId) -> bytes | None:
            async with limit:
                try:
                    return await self.read(blob_id, 0, length)
                except BlobMissing:
                    return None

        heads = await asyncio.gather(*(one(blob_id) for blob_id in blob_ids))
        return {b: head for b, head in zip(blob_ids, heads, strict=True) if head is not None}

    async def stream(
        self, blob_id: BlobId, offset: int = 0, chunk_size: int = 65536
    ) -> AsyncIterator[bytes]:
        # A ranged GET per megabyte, not one long GET: a slow IMAP client must not hold a
        # connection open until the S3 server's idle timeout cuts it mid-message.
        step = max(chunk_size, _STREAM_READ // chunk_size * chunk_size)
        position = offset
        while True:
            data = await self.read(blob_id, position, step)
            for start in range(0, len(data), chunk_size):
                yield data[start : start + chunk_size]
            position += len(data)
            if len(data) < step:
                return

    async def _head(self, blob_id: BlobId) -> dict[str, Any]:
        answer: dict[str, Any] = await self._call(
            "looking up",
            blob_id,
            self._client.head_object,
            Bucket=self.bucket,
            Key=self.key_of(blob_id),
        )
        return answer

    @timed("size")
    async def size(self, blob_id: BlobId) -> int:
        return int((await self._head(blob_id))["ContentLength"])

    async def modified_at(self, blob_id: BlobId) -> float:
        return float((await self._head(blob_id))["LastModified"].timestamp())

    @timed("delete")
    async def delete(self, blob_id: BlobId) -> None:
        # S3 has no overwrite in place; a deleted object's bytes are the server's to reclaim.
        try:
            await self._call(
                "deleting",
                blob_id,
                self._client.delete_object,
                Bucket=self.bucket,
                Key=self.key_of(blob_id),
            )
        except BlobMissing:
            return

    async def list_ids(self) -> AsyncIterator[BlobId]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "MaxKeys": 1000}
            if token:
                kwargs["ContinuationToken"] = token
            page = await self._call("listing", None, self._client.list_objects_v2, **kwargs)
            for entry in page.get("Contents", []):
                blob_id = _parse_key(str(entry["Key"]))
                if blob_id is not None:
                    yield blob_id
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    async def sweep_temp(self, min_age_s: float = 3600.0) -> int:
        """Abort multipart uploads left by a crash (started more than `min_age_s` ago, so
        that uploads in flight in other processes are spared); returns how many."""
        cutoff = time.time() - min_age_s
        stale: list[tuple[BlobId, str, str]] = []
        markers: dict[str, str] = {}
        while True:
            page = await self._call(
                "listing unfinished uploads in",
                None,
                self._client.list_multipart_uploads,
                Bucket=self.bucket,
                **markers,
            )
            for upload in page.get("Uploads", []):
                blob_id = _parse_key(str(upload["Key"]))
                if blob_id is not None and upload["Initiated"].timestamp() <= cutoff:
                    stale.append((blob_id, str(upload["Key"]), str(upload["UploadId"])))
            if not page.get("IsTruncated"):
                break
            markers = {
                "KeyMarker": str(page.get("NextKeyMarker", "")),
                "UploadIdMarker": str(page.get("NextUploadIdMarker", "")),
            }
        for blob_id, key, upload_id in stale:
            await self._call(
                "aborting a stale upload of",
                blob_id,
                self._client.abort_multipart_upload,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
            )
        return len(stale)


def _parse_key(key: str) -> BlobId | None:
    """The id in a key `<2 hex>/<32 hex>`, or None for anything else in the bucket."""
    prefix, _, name = key.partition("/")
    if len(name) != 32 or prefix != name[:2]:
        return None
    try:
        return BlobId(bytes.fromhex(name))
    except ValueError:
        return None
