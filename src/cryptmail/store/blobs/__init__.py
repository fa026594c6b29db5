"""Blob backends: a local directory (default) or an S3-compatible bucket."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_EXPORTS: dict[str, tuple[str, ...]] = {
    "_base": (
        "BlobStore",
        "BlobWriter",
    ),
    "_local": (
        "DELETE_GRACE_S",
        "LocalBlobStore",
        "TempFiles",
    ),
    "_open": ("open_blob_store",),
    "_s3": ("S3BlobStore",),
}
"""Each private module, and the names of `__all__` it holds."""
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    # Each name is imported from its module on first use (PEP 562), not with the
    # package, so a process loads only the modules it runs: see serve/__init__.py.
    # Plain import statements, so the architecture test still sees every edge.
    module = _MODULE_OF.get(name)
    if module == "_base":
        from cryptmail.store.blobs import _base

        value = getattr(_base, name)
    elif module == "_local":
        from cryptmail.store.blobs import _local

        value = getattr(_local, name)
    elif module == "_open":
        from cryptmail.store.blobs import _open

        value = getattr(_open, name)
    elif module == "_s3":
        from cryptmail.store.blobs import _s3

        value = getattr(_s3, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value
