"""Blob backends: a local directory (default) or an S3-compatible bucket."""

from cryptmail.store.blobs._base import BlobStore, BlobWriter
from cryptmail.store.blobs._local import LocalBlobStore

__all__ = ["BlobStore", "BlobWriter", "LocalBlobStore"]
