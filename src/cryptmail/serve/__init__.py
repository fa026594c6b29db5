"""cryptmail.serve: the running server, between the protocols and the command line.

`run_server` is the composition root: it builds what the listeners share (`Shared`),
makes the listeners `Addresses` turn on (`make_listeners`), each of the one `Listener`
shape, and runs them with the housekeeping chores until a signal stops them.
LMTP runs in worker processes (`LmtpWorkers`, each running `_lmtp_worker`); memory
settings for long-running processes are in `_memory`.
"""

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
    "Listener",
    "LmtpWorkers",
    "Shared",
    "WorkerSetup",
    "expire_tags_forever",
    "make_listeners",
    "run_server",
    "settle_gc",
    "sweep_forever",
    "sweep_once",
    "tune_malloc",
    "zero_deleted_forever",
]
