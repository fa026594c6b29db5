"""The hashing process: Argon2 for the server, in an interpreter that imports nothing else.

Started by `cryptmail.hashing._processes` as `python -I -S <this file> IDLE_SECONDS DIR...`
(run by path, not as a module, so no cryptmail package and none of its imports are
loaded; -S skips `site` and its .pth files, the DIRs being where argon2-cffi and cffi
live: the process costs an interpreter and argon2-cffi, about 9 MiB, plus the Argon2
memory while it runs).
One request at a time on stdin, one answer on stdout, framed as `_processes` writes
them; exits on end of input or after IDLE_SECONDS without a request. The arguments and
the environment hold no secret: the password arrives only on the pipe.

Self-contained on purpose: stdlib and argon2-cffi only (ctypes for prctl/mlockall).
"""

from __future__ import annotations

import ctypes
import os
import resource
import select
import struct
import sys

OP_RAW, OP_ENCODED, OP_VERIFY = 0, 1, 2
OK, MISMATCH, VERIFICATION_ERROR, INVALID_HASH, HASHING_ERROR, BAD_REQUEST = range(6)
_MAX_REQUEST = 1 << 20
_PR_SET_DUMPABLE = 4
_PR_SET_NAME = 15
_M_MMAP_THRESHOLD = -3
NAME = b"cryptmail-hash"
_MCL_CURRENT, _MCL_FUTURE, _MCL_ONFAULT = 1, 2, 4


def _harden() -> None:
    # execve made us dumpable again: no core file and no ptrace/proc-mem reads of a
    # password; pinned out of swap where the server's limits allow it (as serve does).
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    libc.prctl(_PR_SET_NAME, ctypes.c_char_p(NAME), 0, 0, 0)  # for ps and the operator
    # A fixed mmap threshold: Argon2's block matrix (MiBs) always gets its own mmap and
    # goes back to the kernel when freed. glibc's threshold otherwise rises to the size
    # of the last freed block (up to 32 MiB), and a 19 MiB matrix then stayed on the heap:
    # 28 MiB PSS kept by an idle hashing process after a burst of logins.
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, 128 * 1024)
    soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if soft == resource.RLIM_INFINITY or os.geteuid() == 0:
        libc.mlockall(_MCL_CURRENT | _MCL_FUTURE | _MCL_ONFAULT)


def _read_exact(fd: int, n: int) -> bytearray | None:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        chunk = os.readv(fd, [view[got:]])
        if chunk == 0:
            return None
        got += chunk
    return buf


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _Fields:
    """Reads the request's fields in order: length-prefixed bytes and 32-bit numbers."""

    def __init__(self, buf: bytearray) -> None:
        self.buf = buf
        self.at = 1

    def number(self) -> int:
        (value,) = struct.unpack_from(">I", self.buf, self.at)
        self.at += 4
        return int(value)

    def blob(self) -> bytes:
        size = self.number()
        if self.at + size > len(self.buf):
            raise ValueError("field beyond the request")
        value = bytes(self.buf[self.at : self.at + size])
        self.at += size
        return value


def _answer(buf: bytearray) -> tuple[int, bytes]:
    from argon2 import Type, low_level  # imported at the start by main, from its DIRs
    from argon2.exceptions import (
        HashingError,
        InvalidHashError,
        VerificationError,
        VerifyMismatchError,
    )

    op = buf[0]
    fields = _Fields(buf)
    try:
        if op in (OP_RAW, OP_ENCODED):
            secret, salt = fields.blob(), fields.blob()
            time_cost, memory_cost, parallelism, hash_len = (fields.number() for _ in range(4))
            kind, version = Type(fields.number()), fields.number()
            call = low_level.hash_secret_raw if op == OP_RAW else low_level.hash_secret
            return OK, call(
                secret, salt, time_cost, memory_cost, parallelism, hash_len, kind, version
            )
        if op == OP_VERIFY:
            encoded, secret = fields.blob(), fields.blob()
            low_level.verify_secret(encoded, secret, Type(fields.number()))
            return OK, b""
        return BAD_REQUEST, b"unknown operation"
    except VerifyMismatchError:
        return MISMATCH, b""
    except VerificationError as exc:
        return VERIFICATION_ERROR, str(exc).encode()
    except InvalidHashError as exc:
        return INVALID_HASH, str(exc).encode()
    except HashingError as exc:
        return HASHING_ERROR, str(exc).encode()
    except (ValueError, struct.error) as exc:
        return BAD_REQUEST, str(exc).encode()


def main(idle_s: float, paths: list[str]) -> int:
    sys.path[:0] = paths
    import argon2.low_level  # noqa: F401 - now, not at the first request

    _harden()
    while True:
        ready, _w, _x = select.select([0], [], [], idle_s)
        if not ready:
            return 0  # idle: the next derivation starts a new process
        header = _read_exact(0, 4)
        if header is None:
            return 0
        (size,) = struct.unpack(">I", header)
        if not 0 < size <= _MAX_REQUEST:
            return 2
        request = _read_exact(0, size)
        if request is None:
            return 0
        try:
            status, result = _answer(request)
        finally:
            request[:] = bytes(size)  # the one copy of the password we can wipe
        _write_all(1, struct.pack(">IB", len(result) + 1, status) + result)


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]), sys.argv[2:]))
