"""`serve` processes cannot dump core: PR_SET_DUMPABLE 0 and RLIMIT_CORE 0.

Each check runs in a fresh subprocess, since the settings are for the whole process
and would stay on the test runner otherwise.
"""

from __future__ import annotations

import subprocess
import sys

_CHECK = """
import ctypes, resource
from cryptmail.serve._hardening import forbid_core_dumps
libc = ctypes.CDLL(None, use_errno=True)
before = libc.prctl(3, 0, 0, 0, 0)  # PR_GET_DUMPABLE
forbid_core_dumps()
after = libc.prctl(3, 0, 0, 0, 0)
print(before, after, *resource.getrlimit(resource.RLIMIT_CORE))
"""


def test_forbid_core_dumps_in_a_fresh_process() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CHECK], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == ["1", "0", "0", "0"], done.stderr
