"""Blob backends: a local directory (default) or an S3-compatible bucket."""

from cryptmail.store.blobs._base import BlobStore, BlobWriter
from cryptmail.store.blobs._local import DELETE_GRACE_S, LocalBlobStore, TempFiles
from cryptmail.store.blobs._open import open_blob_store
from cryptmail.store.blobs._s3 import S3BlobStore

__all__ = [
    "DELETE_GRACE_S",
    "BlobStore",
    "BlobWriter",
    "LocalBlobStore",
    "S3BlobStore",
    "TempFiles",
    "open_blob_store",
]
