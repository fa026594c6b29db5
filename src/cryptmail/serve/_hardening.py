"""No core files from server processes: they hold unlocked private keys.

`forbid_core_dumps` sets RLIMIT_CORE to 0 (hard limit too, so the process cannot raise
it again) and PR_SET_DUMPABLE to 0, which also stops other processes of the same user
from attaching with ptrace or reading /proc/<pid>/mem. `serve` calls it first thing, and
so does each LMTP worker: execve makes a process dumpable again.

`keep_out_of_swap` pins the process's pages (mlockall) where the limit allows it: the
keys live in Python objects spread over the heap, so only locking the whole process
keeps them out of swap. That needs RLIMIT_MEMLOCK unlimited (systemd:
`LimitMEMLOCK=infinity`) or CAP_IPC_LOCK; under the usual limit of a service user
(8 MiB), where locking everything would make allocations fail, it is skipped and logged,
and encrypted (or no) swap is what protects the keys (docs/security.md).
Pages are locked as they are touched (MCL_ONFAULT), not all at once.
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
_MCL_CURRENT: Final = 1
_MCL_FUTURE: Final = 2
_MCL_ONFAULT: Final = 4
_CAP_IPC_LOCK: Final = 14


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


def _may_lock_beyond_the_limit() -> bool:
    """Whether this process has CAP_IPC_LOCK (root usually has), for which the kernel
    ignores RLIMIT_MEMLOCK."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_IPC_LOCK & 1)
    except OSError:
        pass
    return False


def keep_out_of_swap() -> bool:
    """Lock this process's memory, present and future, if the kernel allows it without
    limit (RLIMIT_MEMLOCK unlimited, or CAP_IPC_LOCK); whether it is locked now. Never
    raises: a server runs either way."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if soft != resource.RLIM_INFINITY and not _may_lock_beyond_the_limit():
        log.info(
            "process %d: memory not locked against swap (RLIMIT_MEMLOCK %d KiB; "
            "LimitMEMLOCK=infinity in the systemd unit locks it)",
            os.getpid(),
            soft // 1024,
        )
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    flags = _MCL_CURRENT | _MCL_FUTURE | _MCL_ONFAULT
    if libc.mlockall(flags) != 0 and libc.mlockall(_MCL_CURRENT | _MCL_FUTURE) != 0:
        # EINVAL: a kernel before 4.4 without MCL_ONFAULT, retried without it above.
        log.warning(
            "process %d: mlockall failed (%s); keys may reach swap",
            os.getpid(),
            os.strerror(ctypes.get_errno()),
        )
        return False
    log.info("process %d: memory locked: unlocked keys never reach swap", os.getpid())
    return True
