"""The blob backend interface: write-once objects named by random ids."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from cryptmail.store._ids import BlobId


class BlobWriter(Protocol):
    """One blob being written. Nothing is visible under its id before `commit`."""

    async def write(self, data: bytes) -> None: ...

    async def commit(self) -> int:
        """Make the blob durable and visible; returns its size."""
        ...

    async def abort(self) -> None:
        """Throw away what was written."""
        ...


class BlobStore(Protocol):
    async def create(self, blob_id: BlobId) -> BlobWriter: ...

    async def read(self, blob_id: BlobId, offset: int = 0, length: int = -1) -> bytes:
        """Bytes [offset, offset+length) (to the end for -1). BlobMissing if absent."""
        ...

    async def read_heads(self, blob_ids: Sequence[BlobId], length: int) -> dict[BlobId, bytes]:
        """The first `length` bytes of each blob (all of a shorter one), in one round trip
        where the backend allows. A missing blob is left out rather than raised: the
        caller reads it again on its own and gets the usual BlobMissing."""
        ...

    def stream(
        self, blob_id: BlobId, offset: int = 0, chunk_size: int = 65536
    ) -> AsyncIterator[bytes]:
        """The blob from `offset` in pieces of at most `chunk_size`."""
        ...

    async def size(self, blob_id: BlobId) -> int: ...

    async def modified_at(self, blob_id: BlobId) -> float:
        """When the blob was written (Unix time); the sweep spares young orphans."""
        ...

    async def delete(self, blob_id: BlobId) -> None:
        """Remove the blob from its name at once; no error if absent. The local backend
        overwrites its bytes a little later (`LocalBlobStore.sweep_deleted`), once no
        read that began before the delete can still be reading them."""
        ...

    def list_ids(self) -> AsyncIterator[BlobId]: ...

    async def ready(self) -> None:
        """Return if the store can be written now (for a readiness probe); raise
        StoreUnavailable naming what is wrong otherwise."""
        ...

    async def sweep_temp(self, min_age_s: float = 3600.0) -> int:
        """Remove what crashed writers left (temp files, unfinished uploads) older than
        `min_age_s`; returns how many."""
        ...
