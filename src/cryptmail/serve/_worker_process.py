"""The entry point of an LMTP worker process: `python -m cryptmail.serve._worker_process`.

What a worker runs is `_lmtp_worker`. It is kept apart from that module because the
package imports `_lmtp_worker` (for `WorkerSetup`) before `-m` runs its target, and
running an already-imported module as __main__ executes it a second time (runpy warns).
"""

from __future__ import annotations

import sys

from cryptmail.serve._lmtp_worker import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
