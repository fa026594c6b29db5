"""Picking the blob backend that the configuration names."""

from __future__ import annotations

from cryptmail.config import Config
from cryptmail.store.blobs._base import BlobStore
from cryptmail.store.blobs._local import LocalBlobStore


def open_blob_store(config: Config) -> BlobStore:
    """The backend `config.blobs.backend` selects; ConfigError if an S3 key file is unusable."""
    blobs = config.blobs
    if blobs.backend == "s3":
        # Imported here: a process on local blobs (an LMTP worker) does not load it.
        from cryptmail.store.blobs._s3 import S3BlobStore

        return S3BlobStore.from_key_files(
            blobs.s3_endpoint,
            blobs.s3_bucket,
            blobs.s3_access_key_file,
            blobs.s3_secret_key_file,
            blobs.s3_region,
        )
    return LocalBlobStore(config.blob_path)
