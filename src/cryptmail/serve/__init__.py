"""cryptmail.serve: the running server, between the protocols and the command line.

`run_server` is the composition root: it builds what the listeners share (`Shared`),
makes the listeners `Addresses` turn on (`make_listeners`), each of the one `Listener`
shape, and runs them with the housekeeping chores until a signal stops them.
LMTP runs in worker processes the main process starts on demand (`LmtpWorkers`, each
running `_lmtp_worker`; with `lmtp.deliver_in_main` in the main process too), or in
workers forked by `cryptmail serve` before anything else runs (`prefork_workers`, with
`lmtp.process_idle_s = 0`); memory settings for long-running processes are in `_memory`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptmail.serve._housekeeping import (
        expire_tags_forever,
        sweep_forever,
        sweep_once,
        zero_deleted_forever,
    )
    from cryptmail.serve._listener import Listener
    from cryptmail.serve._lmtp_worker import WorkerSetup
    from cryptmail.serve._lmtp_workers import LmtpWorkers
    from cryptmail.serve._memory import settle_gc, tune_malloc
    from cryptmail.serve._prefork import DormantWorker, prefork_workers
    from cryptmail.serve._supervisor import (
        GRACE_S,
        Addresses,
        Shared,
        make_listeners,
        run_server,
    )

__all__ = [
    "GRACE_S",
    "Addresses",
    "DormantWorker",
    "Listener",
    "LmtpWorkers",
    "Shared",
    "WorkerSetup",
    "expire_tags_forever",
    "make_listeners",
    "prefork_workers",
    "run_server",
    "settle_gc",
    "sweep_forever",
    "sweep_once",
    "tune_malloc",
    "zero_deleted_forever",
]


def __getattr__(name: str) -> Any:
    # Each name is imported on first use (PEP 562), not with the package: an LMTP worker
    # process runs `python -m cryptmail.serve._worker_process`, which imports this
    # package first, and must not pay for IMAP, the web pages and Alembic it never runs.
    # Plain import statements, so the architecture test still sees every edge.
    if name in ("GRACE_S", "Addresses", "Shared", "make_listeners", "run_server"):
        from cryptmail.serve import _supervisor

        value = getattr(_supervisor, name)
    elif name in ("expire_tags_forever", "sweep_forever", "sweep_once", "zero_deleted_forever"):
        from cryptmail.serve import _housekeeping

        value = getattr(_housekeeping, name)
    elif name in ("settle_gc", "tune_malloc"):
        from cryptmail.serve import _memory

        value = getattr(_memory, name)
    elif name in ("DormantWorker", "prefork_workers"):
        from cryptmail.serve import _prefork

        value = getattr(_prefork, name)
    elif name == "Listener":
        from cryptmail.serve import _listener

        value = getattr(_listener, name)
    elif name == "LmtpWorkers":
        from cryptmail.serve import _lmtp_workers

        value = getattr(_lmtp_workers, name)
    elif name == "WorkerSetup":
        from cryptmail.serve import _lmtp_worker

        value = getattr(_lmtp_worker, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value
