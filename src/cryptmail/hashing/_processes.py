"""Hashing processes: Argon2 in small child interpreters instead of the server process.

One Argon2id at the default cost takes 46 MiB for the time it runs. In the server
process that memory raised its peak RSS by 46 MiB per login running at once, on top of
everything the server had imported. Here each derivation runs in a child started by exec
of a fresh interpreter (`python -I _child.py`, not a fork: a fork's RSS would count every
inherited page) that imports only argon2-cffi: about 10 MiB, plus the Argon2 memory
while it runs. A child does one derivation at a time, so the calling threads (the KDF
pool, `crypto.argon2.max_concurrent`) bound how many run, and they run on every core.

Children start on demand and exit after `idle_s` without work, so an idle server pays
nothing for them. A child that dies during a derivation (killed, out of memory) fails
that one call with `KdfUnavailable`, a transient error the login answers as such; the
next call starts a new child. Nothing secret is in a child's arguments or environment:
the password travels on the pipe only, and no input is logged.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

from cryptmail.errors import KdfUnavailable

log = logging.getLogger(__name__)

CHILD_SCRIPT: Final = Path(__file__).with_name("_child.py")
_MAX_ANSWER: Final = 1 << 16
# A child exits `idle_s` after its last answer; one that has waited nearly that long
# (within this share of it, at most 5 s) is not sent work any more (it might be exiting
# just then) but retired and replaced.
_RETIRE_MARGIN: Final = 0.25


@dataclass
class _Child:
    proc: subprocess.Popen[bytes]
    stdin: IO[bytes]
    stdout: IO[bytes]
    last_used: float = field(default_factory=time.monotonic)


def _library_dirs() -> list[str]:
    """Where argon2-cffi and the cffi modules it loads live: the child runs with -S (no
    `site`, whose .pth files imported certifi and pathlib here: 5 MiB and a third of its
    start) and gets these on its path instead."""
    dirs: list[str] = []
    specs = (
        importlib.util.find_spec("argon2"),
        importlib.util.find_spec("_argon2_cffi_bindings"),
        importlib.util.find_spec("_cffi_backend"),
    )
    for spec in specs:
        if spec is None or spec.origin is None:
            continue
        origin = Path(spec.origin)
        found = str(origin.parents[1] if spec.submodule_search_locations else origin.parent)
        if found not in dirs:
            dirs.append(found)
    return dirs


def _child_environment() -> dict[str, str]:
    # The server's environment may hold anything; the child needs none of it (-I ignores
    # PYTHON* anyway). The loader path only where the interpreter itself needs it.
    return {k: v for k, v in os.environ.items() if k in ("LD_LIBRARY_PATH", "PATH")}


class HashingProcesses:
    """A pool of hashing children; `call` is blocking and safe from many threads."""

    def __init__(self, idle_s: float, python: str = sys.executable) -> None:
        if idle_s <= 0:
            raise ValueError("idle_s must be positive")
        self.idle_s = idle_s
        self._python = python
        self._argv = [python, "-I", "-S", str(CHILD_SCRIPT), repr(float(idle_s)), *_library_dirs()]
        self._lock = threading.Lock()
        self._idle: list[_Child] = []
        self._live: set[int] = set()
        self._closed = False

    def pids(self) -> list[int]:
        """The process ids of the children alive now, busy or idle."""
        with self._lock:
            return sorted(self._live)

    def call(self, request: bytes) -> tuple[int, bytes]:
        """Send one framed request, return (status, payload) of the answer.

        Raises:
            KdfUnavailable: the child died or answered nonsense; the next call starts a
                new one.
        """
        child = self._take()
        try:
            child.stdin.write(struct.pack(">I", len(request)) + request)
            child.stdin.flush()
            header = child.stdout.read(4)
            size = struct.unpack(">I", header)[0] if len(header) == 4 else 0
            if not 0 < size <= _MAX_ANSWER:
                raise EOFError
            answer = child.stdout.read(size)
            if len(answer) != size:
                raise EOFError
        except (OSError, EOFError, ValueError):
            self._discard(child)
            raise KdfUnavailable() from None
        child.last_used = time.monotonic()
        with self._lock:
            if self._closed:
                _retire(child)
            else:
                self._idle.append(child)
        return answer[0], answer[1:]

    def close(self) -> None:
        """Let every idle child exit (end of input); busy ones exit after their answer."""
        with self._lock:
            self._closed = True
            children, self._idle = self._idle, []
        for child in children:
            _retire(child)

    def _take(self) -> _Child:
        stale: list[_Child] = []
        found: _Child | None = None
        now = time.monotonic()
        usable_s = self.idle_s - min(5.0, self.idle_s * _RETIRE_MARGIN)
        with self._lock:
            while self._idle:
                child = self._idle.pop()
                fresh = now - child.last_used < usable_s
                if fresh and child.proc.poll() is None:
                    found = child
                    break
                stale.append(child)
        for child in stale:
            _retire(child)
        return found if found is not None else self._start()

    def _start(self) -> _Child:
        try:
            proc = subprocess.Popen(  # noqa: S603 - our interpreter and our script
                self._argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=_child_environment(),
                close_fds=True,
            )
        except OSError as exc:
            log.error("cannot start a hashing process (%s): %s", self._python, exc)
            raise KdfUnavailable() from None
        assert proc.stdin is not None and proc.stdout is not None  # noqa: S101 - PIPE given
        with self._lock:
            self._live.add(proc.pid)
        # Reap the child whenever it exits (idle, killed), so no zombie waits for the
        # next login; the thread ends with it.
        threading.Thread(target=self._reap, args=(proc,), name="hasher-reaper", daemon=True).start()
        log.debug("hashing process %d started", proc.pid)
        return _Child(proc, proc.stdin, proc.stdout)

    def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        proc.wait()
        with self._lock:
            self._live.discard(proc.pid)

    def _discard(self, child: _Child) -> None:
        child.proc.kill()
        code = child.proc.wait()
        _close_pipes(child)
        log.warning(
            "hashing process %d ended during a derivation (exit status %d); that login "
            "was answered with a temporary error, the next one starts a new process",
            child.proc.pid,
            code,
        )


def _close_pipes(child: _Child) -> None:
    for pipe in (child.stdin, child.stdout):
        try:
            pipe.close()
        except OSError:
            pass


def _retire(child: _Child) -> None:
    # End of input makes the child exit; its reaper thread collects the status.
    _close_pipes(child)
