"""A temporary spool for a message in transit, encrypted under a key held in memory.

LMTP receives one DATA for several recipients, each sealed to another key, and a 50 MB
message must not sit in memory. Past 512 KiB the spool keeps it on disk sealed to an
ephemeral X25519 key that lives only in this object: a crash leaves an unreadable file,
which the next start removes. Nothing in plaintext ever touches the disk.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from cryptmail.concurrency import run_blocking
from cryptmail.crypto import (
    BlobOpener,
    BlobSealer,
    generate_private_key,
    parse_blob_header,
    public_info,
)

_READ = 256 * 1024
_MEMORY_LIMIT = 512 * 1024


def _overwrite(buffer: bytearray) -> None:
    """Zero the plaintext before its memory is freed, in place: one pass, where assigning
    `bytes(len)` made a zeroed copy first."""
    if buffer:
        ctypes.memset((ctypes.c_char * len(buffer)).from_buffer(buffer), 0, len(buffer))


class Spool:
    """Write once with `write`/`close`, then read any number of times with `chunks`.

    A message up to `memory_limit` bytes stays in memory and never touches the disk:
    most mail is small, and a file, an ephemeral key and a second seal per delivery
    cost more than the delivery's own sealing. A larger one moves to a sealed file.
    """

    def __init__(self, directory: Path, memory_limit: int = _MEMORY_LIMIT) -> None:
        self._directory = directory
        self._memory_limit = memory_limit
        self._memory: bytearray | None = bytearray()
        self._file: BinaryIO | None = None
        self._path: Path | None = None
        self._digest = hashlib.sha256()
        self.size = 0

    @property
    def digest(self) -> bytes:
        """SHA-256 of the message written so far (for the delivery tag)."""
        return self._digest.digest()

    @property
    def on_disk(self) -> bool:
        return self._path is not None

    def _open_file(self) -> None:
        self._directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        private = generate_private_key("x25519")
        self._spool_id = os.urandom(16)
        self._sealer = BlobSealer(public_info(private), self._spool_id)
        self._message_key = self._sealer.message_key
        path = self._directory / f"spool-{os.getpid()}-{self._spool_id.hex()}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._path = path
        self._file = os.fdopen(fd, "wb")
        self._file.write(self._sealer.header)

    async def write(self, data: bytes) -> None:
        self.size += len(data)
        self._digest.update(data)
        if self._memory is not None:
            self._memory += data
            if len(self._memory) <= self._memory_limit:
                return
            data = bytes(self._memory)
            self._forget_memory()
            await run_blocking(self._open_file)
        assert self._file is not None  # noqa: S101 - set by _open_file
        sealed = self._sealer.update(data)
        if sealed:
            await run_blocking(self._file.write, sealed)

    async def close(self) -> None:
        if self._file is None:
            return
        file = self._file
        await run_blocking(file.write, self._sealer.finalize())
        await run_blocking(file.close)

    def head(self) -> bytes | None:
        """The message up to and with its first empty line (all of it if it has none),
        copied from memory: a header-only reader (Sieve) then copies no body. None
        when the spool is on disk: read `chunks` then."""
        if self._memory is None:
            return None
        memory = self._memory
        if memory[:1] == b"\n" or memory[:2] == b"\r\n":  # an empty header: the
            return bytes(memory[: memory.index(b"\n") + 1])  # empty line alone, no body
        # The bare-LF form only before the CRLF one: not a search through the body.
        crlf = memory.find(b"\r\n\r\n")
        lf = memory.find(b"\n\n", 0, len(memory) if crlf < 0 else crlf + 2)
        end = lf + 2 if lf >= 0 else len(memory) if crlf < 0 else crlf + 4
        with memoryview(memory) as view:
            return bytes(view[:end])

    async def chunks(self) -> AsyncIterator[bytes]:
        """The message, verified chunk by chunk."""
        if self._memory is not None:
            for start in range(0, len(self._memory), _READ):
                with memoryview(self._memory) as view:
                    chunk = bytes(view[start : start + _READ])  # one copy, not two
                yield chunk
            return
        assert self._path is not None  # noqa: S101 - discarded spools are not read
        with open(self._path, "rb") as f:  # noqa: ASYNC230 - reads go through run_blocking
            head = await run_blocking(f.read, 512)
            header = parse_blob_header(head)
            opener = BlobOpener(header, self._message_key, self._spool_id)
            pending = head[header.size :]
            while True:
                out = opener.update(pending)
                if out:
                    yield out
                pending = await run_blocking(f.read, _READ)
                if not pending:
                    break
            last = opener.finalize()
            if last:
                yield last

    def _forget_memory(self) -> None:
        if self._memory is not None:
            _overwrite(self._memory)
            self._memory = None

    def discard(self) -> None:
        self._forget_memory()
        if self._file is not None and not self._file.closed:
            self._file.close()
        if self._path is not None:
            self._path.unlink(missing_ok=True)


def sweep_spools(directory: Path) -> int:
    """Remove spools left by a crash (unreadable anyway: their key died with the process)."""
    if not directory.exists():
        return 0
    count = 0
    for entry in directory.glob("spool-*"):
        try:
            pid = int(entry.name.split("-")[1])
            os.kill(pid, 0)
            continue  # its writer still runs (another frontend on this data dir)
        except (ValueError, IndexError, ProcessLookupError):
            pass
        except PermissionError:
            continue
        entry.unlink(missing_ok=True)
        count += 1
    return count
