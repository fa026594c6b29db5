"""Blobs as files in a local directory.

Layout: `<root>/<2 hex>/<32 hex>` (the id's first byte fans out directories) and
`<root>/tmp/` for large blobs being written (`<id>.<pid>`) or deleted
(`<id>.deleted.<pid>`). A write is crash-safe: no row names a blob before its bytes and
its name are on disk (the caller commits the row only after `commit` returned).

- A blob that fits the writer's buffer (most mail) is written at commit straight under
  its id: create, write, fsync, fsync the directory. Its name and inode then go to disk
  in one journal commit, and the directory's fsync finds nothing left to do (ext4,
  measured; journaling file systems in general). Through tmp/ and a rename after the
  fsync, the rename needed a journal commit of its own: one more disk wait a message
  (docs/benchmarks.md, "Small blobs written under their id").
  A crash before the fsync may leave a part of it under its id: no row names it, so it
  is an orphan like a blob whose row never committed, removed by the orphan sweep
  (`store check` reads no orphan's header).
- A larger one streams into tmp/ as the buffer fills, then: fsync, rename, fsync the
  directory. A crash leaves at most a file in tmp/, which `sweep_dead_writers` removes at
  the next start (its writer's pid is gone) and `sweep_temp` once it is old.

Whatever leaves tmp/ is overwritten with zeros first: a temp file or a blob being
deleted may be a crypt 0 user's plaintext, which must not stay in free blocks (on a
plain filesystem; not on copy-on-write or SSD wear levelling).

A deleted blob is zeroed only DELETE_GRACE_S after it left its name (`sweep_deleted`,
run by `serve`), never at once: a FETCH in another session may have opened the file a
moment before, and zeroing the inode under it would hand that client zeros as the
message (or, sealed, a failed tag) instead of the bytes it asked for. A reader that
opens the file after the rename finds it missing, as for any expunged message.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptmail.concurrency import run_blocking, run_in_thread
from cryptmail.errors import BlobMissing, StoreUnavailable
from cryptmail.store._ids import BlobId
from cryptmail.store.blobs._timed import timed

_BUFFER = 256 * 1024
DELETE_GRACE_S = 30.0
"""How long a deleted blob waits in tmp/ before it is zeroed and unlinked: far longer
than one read of a blob (one open, seek and read of at most a few hundred KB)."""
_DELETED = ".deleted."
_WAITS_LONG = 1024 * 1024
"""A blob larger than this makes its commit wait for the disk long enough to hand it to
a thread even in a process that blocks in place (see `concurrency`). It was 64 KB while
LMTP ran one worker per core, where a 200 KB commit in place left that core idle; with
two workers per core the other worker fills it, and the thread's hand-off (the GIL
passed back and forth) cost more than it saved: 206 KB on eight connections took 3.13
ms of CPU a message through the thread and 2.94 in place, on one connection 2.23x
Dovecot's rate against 2.45x (bench/delivery.py, 2026-12-07)."""
# Owner only, whatever the umask: names and sizes of blobs are nobody else's business.
_DIR_MODE = 0o700
_FILE_MODE = 0o600


@dataclass(frozen=True)
class TempFiles:
    """Files in `blobs/tmp`: how many and their bytes."""

    count: int = 0
    bytes: int = 0


def _zero_and_unlink(path: Path) -> int:
    """Overwrite `path` with zeros in place, fsync, unlink; returns its size. Raises
    FileNotFoundError if it is gone already."""
    with open(path, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        remaining = size
        zeros = bytes(min(_BUFFER, size))
        while remaining > 0:
            step = min(remaining, len(zeros))
            f.write(zeros[:step] if step < len(zeros) else zeros)
            remaining -= step
        f.flush()
        os.fsync(f.fileno())
    path.unlink()
    return size


def _read_upto(fd: int, length: int) -> bytes:
    """Up to `length` bytes from the start of `fd`: fewer only at the end of the file
    (a read may return less than asked before that, so read again)."""
    data = os.read(fd, length)
    if len(data) == length or not data:
        return data
    parts = [data]
    got = len(data)
    while got < length:
        more = os.read(fd, length - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _writer_pid(name: str) -> int | None:
    """The pid in a tmp/ name (`<id>.<pid>` or `<id>.deleted.<pid>`); None for others."""
    head, _, pid = name.rpartition(".")
    if not head or not pid.isdigit():
        return None
    return int(pid)


def _runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBlobWriter:
    """Buffers in memory and opens its temp file only when the buffer fills; a blob that
    never fills it is written under its id at commit, in one call (open, write, fsync,
    fsync the directory).
    """

    def __init__(self, store: LocalBlobStore, blob_id: BlobId) -> None:
        self._store = store
        self._blob_id = blob_id
        self._temp = store.root / "tmp" / f"{blob_id.hex()}.{os.getpid()}"
        self._file: BinaryIO | None = None
        # Pieces as they came, written one after another: gathering them in a bytearray
        # and copying it out cost two passes over a 200 KB message.
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._size = 0

    def _open(self) -> BinaryIO:
        if self._file is None:
            fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
            self._file = os.fdopen(fd, "wb")
        return self._file

    def _append(self, pending: list[bytes]) -> None:
        file = self._open()
        for piece in pending:
            file.write(piece)

    def _take_pending(self) -> list[bytes]:
        pending, self._pending, self._pending_size = self._pending, [], 0
        return pending

    async def write(self, data: bytes) -> None:
        if type(data) is not bytes:  # kept until written: a buffer its owner reuses is copied
            data = bytes(data)
        self._pending.append(data)
        self._pending_size += len(data)
        self._size += len(data)
        if self._pending_size >= _BUFFER:
            await run_blocking(self._append, self._take_pending())

    def _fan_out_dir(self, final: Path) -> None:
        if not final.parent.is_dir():
            final.parent.mkdir(mode=_DIR_MODE, exist_ok=True)
            # The new fan-out directory's entry must be durable before a row names a
            # blob inside it (also when a concurrent writer made it a moment ago).
            _fsync_dir(final.parent.parent)

    def _finish(self, pending: list[bytes]) -> None:
        final = self._store.path_of(self._blob_id)
        if self._file is None:
            self._write_in_place(final, pending)
            return
        file = self._file
        for piece in pending:
            file.write(piece)
        file.flush()
        os.fsync(file.fileno())
        file.close()
        self._fan_out_dir(final)
        os.rename(self._temp, final)
        _fsync_dir(final.parent)

    def _write_in_place(self, final: Path, pending: list[bytes]) -> None:
        """The whole blob under its id, synced with its name (see the module's note)."""
        self._fan_out_dir(final)
        fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        try:
            with os.fdopen(fd, "wb") as file:
                for piece in pending:
                    file.write(piece)
                file.flush()
                os.fsync(file.fileno())
            _fsync_dir(final.parent)
        except BaseException:
            # Never named by a row: take it back now, zeroed (it may be a crypt 0 user's
            # plaintext), rather than leave it to the orphan sweep; unzeroed if the disk
            # refuses that too.
            try:
                _zero_and_unlink(final)
            except OSError:
                with contextlib.suppress(OSError):
                    final.unlink()
            raise

    @timed("write")
    async def commit(self) -> int:
        run = run_in_thread if self._size > _WAITS_LONG else run_blocking
        try:
            await run(self._finish, self._take_pending())
        except OSError as exc:
            await self.abort()
            raise StoreUnavailable(f"writing blob {self._blob_id.hex()[:8]} failed: {exc}") from exc
        return self._size

    async def abort(self) -> None:
        self._take_pending()
        if self._file is None:
            return

        def _drop() -> None:
            if self._file is not None and not self._file.closed:
                self._file.close()
            try:
                _zero_and_unlink(self._temp)  # it may hold a crypt 0 user's plaintext
            except FileNotFoundError:
                pass

        await run_blocking(_drop)


class LocalBlobStore:
    """Blob backend on a local filesystem."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        (root / "tmp").mkdir(mode=_DIR_MODE, exist_ok=True)
        self._make_fan_out()

    def _make_fan_out(self) -> None:
        # All 256 fan-out directories up front: otherwise the first few thousand
        # deliveries each pay for a mkdir and an fsync of the root on their way.
        made = False
        for byte in range(256):
            directory = self.root / f"{byte:02x}"
            if not directory.is_dir():
                directory.mkdir(mode=_DIR_MODE, exist_ok=True)
                made = True
        if made:
            _fsync_dir(self.root)

    def path_of(self, blob_id: BlobId) -> Path:
        hexid = blob_id.hex()
        return self.root / hexid[:2] / hexid

    async def create(self, blob_id: BlobId) -> LocalBlobWriter:
        return LocalBlobWriter(self, blob_id)

    def _read(self, blob_id: BlobId, offset: int, length: int) -> bytes:
        try:
            with open(self.path_of(blob_id), "rb") as f:
                f.seek(offset)
                return f.read() if length < 0 else f.read(length)
        except FileNotFoundError:
            raise BlobMissing(
                f"blob {blob_id.hex()} is missing from {self.root}; restore it from backup, "
                "then run `cryptmail store check`"
            ) from None

    @timed("read")
    async def read(self, blob_id: BlobId, offset: int = 0, length: int = -1) -> bytes:
        return await run_blocking(self._read, blob_id, offset, length)

    def _read_heads(self, blob_ids: Sequence[BlobId], length: int) -> dict[BlobId, bytes]:
        # os.open and os.read, not open(): a buffered file object per blob cost more than
        # the read itself from the page cache.
        heads = {}
        for blob_id in blob_ids:
            try:
                fd = os.open(self.path_of(blob_id), os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                heads[blob_id] = _read_upto(fd, length)
            finally:
                os.close(fd)
        return heads

    @timed("read")
    async def read_heads(self, blob_ids: Sequence[BlobId], length: int) -> dict[BlobId, bytes]:
        # One thread hop for the lot: for a FETCH of many small messages the hop, not the
        # read from the page cache, is what costs.
        return await run_blocking(self._read_heads, blob_ids, length)

    async def stream(
        self, blob_id: BlobId, offset: int = 0, chunk_size: int = 65536
    ) -> AsyncIterator[bytes]:
        position = offset
        while True:
            # Read a few chunks per thread hop to keep the hop cost small.
            data = await self.read(blob_id, position, chunk_size * 4)
            if not data:
                return
            for start in range(0, len(data), chunk_size):
                yield data[start : start + chunk_size]
            position += len(data)
            if len(data) < chunk_size * 4:
                return

    @timed("size")
    async def size(self, blob_id: BlobId) -> int:
        try:
            return (await run_blocking(os.stat, self.path_of(blob_id))).st_size
        except FileNotFoundError:
            raise BlobMissing(f"blob {blob_id.hex()} is missing from {self.root}") from None

    async def modified_at(self, blob_id: BlobId) -> float:
        try:
            return (await run_blocking(os.stat, self.path_of(blob_id))).st_mtime
        except FileNotFoundError:
            raise BlobMissing(f"blob {blob_id.hex()} is missing from {self.root}") from None

    def _delete(self, blob_id: BlobId) -> None:
        path = self.path_of(blob_id)
        # Out of its name first, in one rename: a crash while overwriting must not leave a
        # half-zeroed file under a blob id (`store check` would call it malformed). What
        # a crash leaves in tmp/ is swept like any temp file.
        doomed = self.root / "tmp" / f"{blob_id.hex()}{_DELETED}{os.getpid()}"
        try:
            os.rename(path, doomed)
        except FileNotFoundError:
            return
        _fsync_dir(path.parent)

    @timed("delete")
    async def delete(self, blob_id: BlobId) -> None:
        await run_blocking(self._delete, blob_id)

    async def ready(self) -> None:
        def _check() -> None:
            tmp = self.root / "tmp"
            if not tmp.is_dir() or not os.access(tmp, os.W_OK | os.X_OK):
                raise StoreUnavailable(f"the blob directory {tmp} is missing or not writable")

        await run_blocking(_check)

    async def list_ids(self) -> AsyncIterator[BlobId]:
        def _scan() -> list[BlobId]:
            found: list[BlobId] = []
            for sub in sorted(self.root.iterdir()):
                if sub.name == "tmp" or not sub.is_dir():
                    continue
                for entry in sub.iterdir():
                    try:
                        found.append(BlobId(bytes.fromhex(entry.name)))
                    except ValueError:
                        continue
            return found

        for blob_id in await run_blocking(_scan):
            yield blob_id

    def _temp_entries(self) -> list[Path]:
        return [entry for entry in (self.root / "tmp").iterdir() if entry.is_file()]

    async def sweep_temp(self, min_age_s: float = 3600.0) -> int:
        """Zero and remove the files in tmp/ older than `min_age_s` (writes in flight in
        other processes are younger); returns how many."""

        def _sweep() -> int:
            count = 0
            cutoff = time.time() - min_age_s
            for entry in self._temp_entries():
                try:
                    if entry.stat().st_mtime <= cutoff:
                        _zero_and_unlink(entry)
                        count += 1
                except FileNotFoundError:
                    continue
            return count

        return await run_blocking(_sweep)

    async def sweep_deleted(self, min_age_s: float = DELETE_GRACE_S) -> TempFiles:
        """Zero and remove the deleted blobs that left their names more than `min_age_s`
        ago (the rename sets the file's ctime), whichever process deleted them."""

        def _sweep() -> TempFiles:
            count = size = 0
            cutoff = time.time() - min_age_s
            for entry in self._temp_entries():
                if _DELETED not in entry.name:
                    continue
                try:
                    if entry.stat().st_ctime > cutoff:
                        continue
                    size += _zero_and_unlink(entry)
                except FileNotFoundError:
                    continue
                count += 1
            return TempFiles(count, size)

        return await run_blocking(_sweep)

    async def sweep_dead_writers(self, *, spare_own: bool = True) -> TempFiles:
        """Zero and remove the files in tmp/ whose writer (the pid in the name) has
        died, whatever their age: what a killed APPEND, delivery or delete left.

        `spare_own=False` counts this process as dead too: right for `serve` before its
        listeners start, when none of its own writes can be in flight and a file with its
        pid is from an earlier process that had the same pid (a container restarted).
        A file of a running process is kept (a `cryptmail import` or `store` command on
        the same data dir), and so is a name of another form; `sweep_temp` takes both
        once they are old.
        """

        def _sweep() -> TempFiles:
            count = size = 0
            own = os.getpid()
            for entry in self._temp_entries():
                pid = _writer_pid(entry.name)
                if pid is None or (pid == own and spare_own) or (pid != own and _runs(pid)):
                    continue
                try:
                    size += _zero_and_unlink(entry)
                except FileNotFoundError:
                    continue
                count += 1
            return TempFiles(count, size)

        return await run_blocking(_sweep)

    async def temp_usage(self) -> TempFiles:
        """What tmp/ holds now: writes in flight and what crashed writers left."""

        def _usage() -> TempFiles:
            count = size = 0
            for entry in self._temp_entries():
                try:
                    size += entry.stat().st_size
                except FileNotFoundError:
                    continue
                count += 1
            return TempFiles(count, size)

        return await run_blocking(_usage)
