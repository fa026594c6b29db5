"""The entry point of an LMTP worker process: `python -m cryptmail.serve._worker_process`.

What a worker runs is `_lmtp_worker`. It is kept apart from that module because the
package imports `_lmtp_worker` (for `WorkerSetup`) before `-m` runs its target, and
running an already-imported module as __main__ executes it a second time (runpy warns).
It is also the one place that runs before the worker imports SQLAlchemy's asyncio
extension, so the ORM that extension would drag in is deferred here (`_lean_sqlalchemy`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from cryptmail.serve._lean_sqlalchemy import defer_async_orm


def load_main() -> Callable[[list[str]], int]:
    """`_lmtp_worker.main`, imported as a worker imports it: with the ORM deferred."""
    defer_async_orm()
    from cryptmail.serve._lmtp_worker import main

    return main


if __name__ == "__main__":
    sys.exit(load_main()(sys.argv[1:]))
