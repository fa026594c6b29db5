"""No core files from server processes: they hold unlocked private keys.

`forbid_core_dumps` sets RLIMIT_CORE to 0 (hard limit too, so the process cannot raise
it again) and PR_SET_DUMPABLE to 0, which also stops other processes of the same user
from attaching with ptrace or reading /proc/<pid>/mem. `serve` calls it first thing, and
so does each LMTP worker: execve makes a process dumpable again.

Pages holding keys are not mlock()ed: the keys live in Python objects spread over the
heap, so pinning them means mlockall() of the whole process, which fails under the usual
RLIMIT_MEMLOCK of a service user (8 MiB or less) and would pin every cached message
too. Keep keys out of swap with encrypted (or no) swap instead; see docs/security.md.
"""

from __future__ import annotations

import ctypes
import logging
import os
import resource
from typing import Final

log = logging.getLogger(__name__)

_PR_GET_DUMPABLE: Final = 3
_PR_SET_DUMPABLE: Final = 4


def forbid_core_dumps() -> None:
    """Make this process undumpable and its core limit 0. Raises OSError."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")
    # Read back what the kernel holds now, so the log states a fact, not an intention.
    dumpable = libc.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0)
    core = resource.getrlimit(resource.RLIMIT_CORE)
    if dumpable != 0 or core != (0, 0):
        raise OSError(f"core dumps still possible (dumpable {dumpable}, core limit {core})")
    log.info("process %d: core dumps off (not dumpable, core limit 0)", os.getpid())
